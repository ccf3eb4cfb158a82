"""Publish a release atomically: Parquet files and a manifest, renamed into place at the end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from cloakflow.tasks.data.profile import REPO_ROOT


def code_version() -> str:
    """The git commit of the code that made the release ('unknown' outside a checkout)."""
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        sha = out.stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return (sha + ("+dirty" if dirty else "")) if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_release(out_dir: str | Path, dataset: str, release_id: str,
                  tables: dict[str, pl.DataFrame], manifest: dict[str, Any],
                  documents: dict[str, str | bytes] | None = None,
                  readme: str | None = None) -> Path:
    """Write ``<out>/<dataset>/<release_id>/`` atomically.

    Files go to a hidden temporary sibling folder first; the folder is renamed into place only
    after every file was written, so a crash leaves no partial release under the final name.

    Args:
        tables: file stem -> table, written as ``<stem>.parquet``.
        manifest: written as ``manifest.json`` with ``files`` (the tables) and ``documents``.
        documents: file name -> text or bytes beside them (the data owner's report, plots);
            only what the release's privacy statement lets leave the owner's MLflow run.
        readme: the folder's ``README.md`` (what each file is); None writes none.

    Raises:
        FileExistsError: a release with that id already exists.
    """
    parent = Path(out_dir) / dataset
    final = parent / release_id
    if final.exists():
        raise FileExistsError(f"release {final} already exists")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{release_id}.", suffix=".partial", dir=parent))
    try:
        files = {}
        for name, table in tables.items():
            path = tmp / f"{name}.parquet"
            table.write_parquet(path)
            files[name] = {"file": path.name, "rows": table.height, "columns": table.width}
        docs = dict(documents or {})
        if readme is not None:
            docs["README.md"] = readme
        for name, content in docs.items():
            (tmp / name).write_bytes(content.encode() if isinstance(content, str) else content)
        manifest = {**manifest, "files": files,
                    "created_at": datetime.now(UTC).isoformat(timespec="seconds")}
        if docs:
            manifest["documents"] = sorted(docs)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str) + "\n")
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp's folder is private (0700); a release is shared
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def folder_readme(title: str, tables: dict[str, pl.DataFrame], documents: dict[str, str],
                  statement: str, verdict: str | None, elsewhere: str | None = None,
                  policy: dict | None = None, rows: str | None = None, dp: bool = False) -> str:
    """The release folder's ``README.md``: what it is, each file, the verdict (None: kept out,
    it was decided on private-row figures), the limits crossed and the risk accepted on
    record (``policy``: the gate's ``crossed`` and ``accepted_risk``), which rows it holds
    (``rows``) and the statement; ``documents``: file name -> what it holds; ``elsewhere``:
    what is kept out of the folder, and where; ``dp``: a DP release (its manifest holds the
    budget)."""
    said = (f"Verdict of the privacy gate: **{verdict}**." if verdict else
            "The privacy gate's verdict was decided on figures computed on private rows: it "
            "stays with the data owner.")
    lines = [f"# {title}", "", said]
    crossed = list((policy or {}).get("crossed") or [])
    if crossed:
        lines += ["", "This release crossed the privacy policy's limits:", "",
                  *[f"- {c}" for c in crossed]]
        if (policy or {}).get("accepted_risk"):
            lines += ["", f"The data owner published it anyway, accepting the risk on record: "
                          f"\"{policy['accepted_risk']}\"."]
    if rows:
        lines += ["", rows]
    lines += ["", "## Files", ""]
    lines += [f"- `{stem}.parquet`: {t.height} rows x {t.width} columns" for stem, t in
              tables.items()]
    lines += ["- `manifest.json`: how the release was made (source, parameters, models, "
              "measurements the statement allows, "
              + ("the DP budget, " if dp else "")
              + "MLflow and Prefect ids)"]
    lines += [f"- `{name}`: {what}" for name, what in documents.items()]
    if elsewhere:
        lines += ["", elsewhere]
    return "\n".join(lines + ["", "## What this release claims", "", statement, ""])


def codes_documents(frames: dict[str, pl.DataFrame], manifest) -> tuple[dict, str]:
    """A codes release folder's documents and README: the privacy report's summary and its
    inversion plot and the utility table, where the manifest holds them (not under a DP
    release's private report: they stay in the MLflow run)."""
    import tempfile as _tempfile

    from cloakflow.tasks.privacy.report import plot_attacks, summary_markdown

    documents, described = {}, {}
    report = manifest.privacy.report
    if report is not None:
        documents["privacy-report.md"] = summary_markdown(report)
        described["privacy-report.md"] = ("the privacy report: every attack, its figure beside "
                                          "its baseline, the policy and the verdict")
        if report.releases:
            with _tempfile.TemporaryDirectory() as tmp:
                documents["inversion.png"] = Path(plot_attacks(
                    report, f"{tmp}/inversion.png")).read_bytes()
            described["inversion.png"] = ("inversion per attribute: accuracy against its "
                                          "baseline (categorical), R² (numeric)")
    if isinstance(manifest.utility, list) and manifest.utility:
        views = [k for k in manifest.utility[0] if k != "metric"]
        rows = [f"| {r['metric']} | " + " | ".join(f"{r[v]:.4f}" if isinstance(r[v], float)
                                                  else str(r[v]) for v in views) + " |"
                for r in manifest.utility]
        metrics = {r["metric"] for r in manifest.utility}
        threshold = [] if "test_balanced_accuracy" not in metrics else [
            "Balanced accuracy and weighted F1 are read at the forest's 0.5 probability "
            "threshold. On a rare label a forest predicts the majority class nearly everywhere, "
            "so balanced accuracy sits near 0.5 even where the threshold-free ROC AUC and "
            "average precision show the signal: compare the views on those.", ""]
        documents["utility.md"] = "\n".join(
            ["# Utility (cross-validated, training rows)", "", "| metric | " + " | ".join(views)
             + " |", "|---|" + "---|" * len(views), *rows, "", *threshold])
        described["utility.md"] = "what the codes are still good for: the forest's scores on " \
                                  "each view"
    elsewhere = None if report is not None else (
        f"The utility table and the privacy report are computed on the private rows, which "
        f"the DP guarantee does not cover (`--dp-report private`): they stay in MLflow run "
        f"`{manifest.mlflow.run_id}`.")
    rows = (f"Rows: one per training row ({manifest.rows}), in a secret random order; the "
            f"{manifest.control_rows} control rows held out of training (for the attacks) are "
            "not released.")
    readme = folder_readme(f"Codes release `{manifest.mlflow.run_id}` of `{manifest.dataset}`",
                           frames, described, manifest.privacy.statement,
                           manifest.privacy.verdict, elsewhere, manifest.privacy.policy, rows,
                           dp=manifest.dp is not None)
    return documents, readme
