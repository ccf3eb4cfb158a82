"""The privacy ledger: every DP run on a dataset, and the total they spend together.

Each DP run appends one entry *before* its models train (a crash after that still counts as
spent), keyed by the profile's dataset name, so a re-saved copy or a sample of the same people
lands in the same ledger; each entry records the source SHA-256 and row count it saw. An entry
holds every mechanism of the run (sigma, q, steps, delta, sampling) and its adjacency; the total
is recomputed by composing all mechanisms with the one budget type (``tasks.privacy.budget``:
dp-accounting's PLD accountant) under replace-one adjacency (valid for every entry: replace-one
is the weaker relation).

Where: a JSON-lines file per dataset under ``$CLOAKFLOW_LEDGER_DIR`` (default
``~/.cloakflow/ledger/``), independent of any release folder, mirrored to the dataset's MLflow
experiment (artifact ``dp/ledger_entry.json`` on the run, tag ``cloakflow.dp_ledger``). Reading
takes the union of both by run id. The ledger holds private bookkeeping (row counts, hashes):
it is never part of a release.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cloakflow.tasks import console
from cloakflow.tasks.privacy.budget import Mechanism, compose

LEDGER_TAG = "cloakflow.dp_ledger"
LEDGER_ARTIFACT = "dp/ledger_entry.json"


class BudgetExhausted(Exception):
    """A DP run would take the dataset past its lifetime privacy cap (nothing is trained)."""

    exit_code = 3  # the command line's exit status
    headline = ("RUN REFUSED by the dataset's privacy budget, nothing was trained or "
                "published.")

    def __init__(self, dataset: str, message: str):
        super().__init__(message)
        self.dataset = dataset


def ledger_dir() -> Path:
    return Path(os.environ.get("CLOAKFLOW_LEDGER_DIR") or Path.home() / ".cloakflow" / "ledger")


def ledger_file(dataset: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset)
    return ledger_dir() / f"{safe}.jsonl"


def make_entry(dataset: str, run_id: str, source_sha256: str, source_rows: int,
               training_rows: int, dp: dict) -> dict:
    """A ledger entry from a manifest-style ``dp`` section (see ``tasks.privacy.dp.dp_section``)."""
    return {"dataset": dataset, "run_id": run_id,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "source_sha256": source_sha256, "source_rows": source_rows,
            "training_rows": training_rows, "design": dp["design"],
            "adjacency": dp["adjacency"], "accountant": dp["accountant"],
            "epsilon": dp["epsilon"], "delta": dp["delta"],
            "mechanisms": [{k: m[k] for k in ("models", "noise_multiplier", "sampling_rate",
                                              "sampling", "steps", "clip_norm", "epsilon",
                                              "delta")} for m in dp["mechanisms"]]}


def append(entry: dict, parent_run_id: str | None = None) -> Path:
    """Append ``entry`` to the dataset's ledger file and mirror it to the MLflow run."""
    path = ledger_file(entry["dataset"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(json.dumps(entry) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    if parent_run_id:
        from cloakflow.tasks import tracking

        tracking.log_dict(parent_run_id, entry, LEDGER_ARTIFACT)
        tracking.set_tags(parent_run_id, {LEDGER_TAG: "1"})
    return path


def _from_mlflow(dataset: str) -> list[dict]:
    """Entries mirrored to the dataset's MLflow experiment (none if it does not exist)."""
    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = MlflowClient()
    exp = client.get_experiment_by_name(f"cloakflow/{dataset}")
    if exp is None:
        return []
    out = []
    for run in client.search_runs([exp.experiment_id], f"tags.`{LEDGER_TAG}` = '1'",
                                  max_results=10_000):
        path = client.download_artifacts(run.info.run_id, LEDGER_ARTIFACT)
        out.append(json.loads(Path(path).read_text()))
    return out


def entries(dataset: str, include_mlflow: bool = True) -> list[dict]:
    """Every recorded DP run on ``dataset``: the ledger file and the MLflow mirror, by run id.

    Raises:
        ValueError: a line of the ledger file is not a JSON entry (named by file and line).
    """
    found: dict[str, dict] = {}
    path = ledger_file(dataset)
    if path.is_file():
        for i, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                e = json.loads(line)
                found[e["run_id"]] = e
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}, line {i}: not a ledger entry ({exc})") from exc
    if include_mlflow:
        for e in _from_mlflow(dataset):
            found.setdefault(e["run_id"], {**e, "only_in": "mlflow"})
    return sorted(found.values(), key=lambda e: e["date"])


def _mechanisms(entries_: list[dict]) -> list[Mechanism]:
    """Every recorded mechanism as the budget type composes it (``tasks.privacy.budget``): one
    step at rate 1 is a Gaussian count, anything else DP-SGD."""
    return [Mechanism(tuple(m["models"]), m["noise_multiplier"], m["sampling_rate"],
                      m["steps"], m["sampling"], m.get("clip_norm", 1.0),
                      kind="gaussian" if (m["steps"], m["sampling_rate"]) == (1, 1.0)
                      else "dp-sgd") for e in entries_ for m in e["mechanisms"]]


@dataclass(frozen=True)
class Spent:
    """The total of a ledger: epsilon at ``delta`` (PLD, replace-one) over ``runs`` runs."""

    epsilon: float
    delta: float
    runs: int
    basic_epsilon: float  # sum of the runs' own epsilons, for comparison


def total(entries_: list[dict], delta: float | None = None) -> Spent:
    """Compose every mechanism of ``entries_``; ``delta`` defaults to the sum of the runs'
    deltas (what basic composition would pay)."""
    if not entries_:
        return Spent(0.0, delta or 0.0, 0, 0.0)
    delta = delta if delta is not None else sum(e["delta"] for e in entries_)
    eps = compose(_mechanisms(entries_), delta, "replace_one")
    return Spent(eps, delta, len(entries_), sum(e["epsilon"] for e in entries_))


def check_cap(dataset: str, planned: dict, cap: dict | None,
              include_mlflow: bool = True) -> Spent:
    """The total after ``planned`` (a ``dp`` section) would run; refuse past the cap.

    Raises:
        BudgetExhausted: the recorded runs plus this one would spend more than
            ``cap["epsilon"]`` at ``cap["delta"]``.
    """
    recorded = entries(dataset, include_mlflow)
    draft = {"mechanisms": planned["mechanisms"], "delta": planned["delta"],
             "epsilon": planned["epsilon"]}
    after = total(recorded + [draft], cap["delta"] if cap else None)
    if cap and after.epsilon > cap["epsilon"]:
        before = total(recorded, cap["delta"])
        raise BudgetExhausted(dataset,
            f"dataset {dataset!r}: the privacy ledger ({ledger_file(dataset)}) records "
            f"{before.runs} DP run(s) spending epsilon {before.epsilon:.4g} at delta "
            f"{cap['delta']:g}; this run (epsilon {planned['epsilon']:.4g}) would bring the "
            f"total to {after.epsilon:.4g}, past the profile's lifetime cap "
            f"privacy.dp_cap.epsilon = {cap['epsilon']} (rule: dp_cap). Nothing was trained.")
    return after


@contextlib.contextmanager
def _locked(dataset: str):
    """An exclusive lock on the dataset's ledger (a lock file beside it), across processes."""
    path = ledger_file(dataset).with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def spend(planned: dict, cap: dict | None, entry: dict,
          parent_run_id: str | None = None, include_mlflow: bool = True) -> tuple[Spent, Path]:
    """Check the cap and record ``entry`` under one lock, so that two concurrent runs cannot
    both pass a cap that only one of them fits.

    Raises:
        BudgetExhausted: see ``check_cap``; nothing is recorded then.
    """
    with _locked(entry["dataset"]):
        after = check_cap(entry["dataset"], planned, cap, include_mlflow)
        return after, append(entry, parent_run_id)


def summary(dataset: str, cap: dict | None = None, include_mlflow: bool = True) -> str:
    """What ``cloakflow budget DATASET`` prints."""
    recorded = entries(dataset, include_mlflow)
    lines = [f"privacy ledger of {dataset!r}: {ledger_file(dataset)}"]
    if not recorded:
        return "\n".join(lines + ["no DP run recorded: nothing spent"])
    lines.append(f"{'date':<26} {'run id':<34} {'design':<6} {'epsilon':>8} {'delta':>8} "
                 f"{'rows':>8}  source sha256")
    for e in recorded:
        flag = "  (MLflow only)" if e.get("only_in") else ""
        lines.append(f"{e['date']:<26} {e['run_id']:<34} {e['design']:<6} "
                     f"{e['epsilon']:>8.4g} {e['delta']:>8.2g} {e['training_rows']:>8}  "
                     f"{e['source_sha256'][:12]}…{flag}")
    spent = total(recorded, cap["delta"] if cap else None)
    lines.append(f"total: epsilon {spent.epsilon:.4g} at delta {spent.delta:.3g} over "
                 f"{spent.runs} run(s) (dp-accounting PLD, replace-one adjacency; adding the "
                 f"runs' own epsilons would say {spent.basic_epsilon:.4g} at delta "
                 f"{sum(e['delta'] for e in recorded):.3g})")
    if cap is None:
        lines.append("no lifetime cap known (set privacy.dp_cap in the profile, and give it "
                     "with --profile, to check one)")
    if cap:
        state = (f"within it (epsilon {cap['epsilon'] - spent.epsilon:.4g} below; composition "
                 "is not additive, so a next run's share is what the cap check computes)"
                 if spent.epsilon <= cap["epsilon"] else "EXCEEDED")
        lines.append(f"lifetime cap (profile privacy.dp_cap): epsilon {cap['epsilon']} at delta "
                     f"{cap['delta']:g}: {state}")
    return "\n".join(lines)


def spend_for_run(profile, parent: str, source_sha: str, source_rows: int, rows: int,
                  dp_release: dict) -> None:
    """Refuse a run past the dataset's lifetime DP cap (``profile.privacy.dp_cap``); otherwise
    record it in the ledger before any model sees the rows (a crash after this still counts
    as spent), and print what all runs on the dataset have spent.

    Raises:
        BudgetExhausted: the run would take the dataset past its cap.
    """
    cap = profile.privacy.dp_cap
    entry = make_entry(profile.name, parent, source_sha, source_rows, rows, dp_release)
    after, path = spend(dp_release, cap.model_dump() if cap else None, entry, parent)
    at = "the cap's delta" if cap else "the sum of the runs' deltas"
    if dp_release.get("adjacency") == "add_remove":
        at += ("; the ledger composes every run under replace-one, an upper bound for this "
               "add/remove run, so its figure is larger than the run's own")
    console.step(f"privacy ledger {path}: this run spends epsilon "
                 f"{dp_release['epsilon']:.4g} at delta "
          f"{dp_release['delta']:g}; all {after.runs} run(s) on this dataset composed: epsilon "
          f"{after.epsilon:.4g} at delta {after.delta:.3g} ({at})")
