"""The kind seam: a fifth release kind, declared in this one file and registered with one line,
runs end to end through the one release pipeline (``flows/release.py``) under Prefect's engine,
with MLflow on sqlite: the real prepare step (ingest, Great Expectations, split), the one gate
and the one publish path. The toy kind releases each column of the training rows shuffled on its
own (independent marginals); a copying variant is blocked by the gate and publishes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from prefect import flow
from pydantic import BaseModel, Field

from cloakflow.tasks.release import kinds
from cloakflow.tasks.release.kinds import Judged, Package, ReleaseKind, ReleaseRun, limits_of

pytestmark = pytest.mark.integration


class ToyLimits(BaseModel):
    """The toy kind's own policy limit (``privacy.policy.toy`` in the profile)."""

    max_exact_copy_excess: float = Field(0.01, ge=0, le=1)


class ToyOutcome(BaseModel):
    release: str
    verdict: str


def _copies(rows: pl.DataFrame, train: pl.DataFrame) -> float:
    """The share of ``rows`` equal to some training row in every column."""
    seen = set(train.iter_rows())
    return float(np.mean([r in seen for r in rows.iter_rows()])) if rows.height else 0.0


class ToyStages:
    """Independent marginals: every column of the training rows permuted on its own."""

    def __init__(self, copy: bool = False):
        self.copy = copy  # the memorising variant releases the training rows as they are

    def resolve(self, params):
        return params

    def pooled(self, run: ReleaseRun) -> bool:
        return False

    def prepare(self, run: ReleaseRun) -> None:
        p = run.params
        run.data = run.steps.prepare(run.profile, p.input_path, p.control_fraction, p.seed,
                                     run.parent, run.timings)

    def budget(self, run: ReleaseRun) -> None:
        run.budget = None  # no DP mechanism

    def train(self, run: ReleaseRun) -> None:
        run.models = {"columns": run.data.train_frame.columns}

    def build(self, run: ReleaseRun) -> None:
        train = run.data.train_frame
        if self.copy:
            run.release = train
            return
        rng = np.random.default_rng(run.params.seed)
        run.release = pl.DataFrame({c: train.get_column(c).to_numpy()[
            rng.permutation(train.height)] for c in train.columns}, schema=train.schema)

    def evaluate(self, run: ReleaseRun) -> None:
        train, out = run.data.train_frame, run.release
        run.evaluation = {"mean_gap": {c: abs(float(train[c].mean()) - float(out[c].mean()))
                                       for c in train.columns if train[c].dtype.is_numeric()}}

    def attack(self, run: ReleaseRun) -> None:
        train, control = run.data.train_frame, run.data.control_frame
        run.attacks = {"exact_copies": _copies(run.release, train),
                       "exact_copies_control": _copies(control, train)}

    def judge(self, run: ReleaseRun) -> Judged:
        a = run.attacks
        return Judged({"toy": {"max_exact_copy_excess": max(
            0.0, a["exact_copies"] - a["exact_copies_control"])}},
            limits_of(run.profile, run.kind.name).model_dump(), expected=None, utility=None,
            missing="no control rows")

    def render(self, run: ReleaseRun, outcome) -> str:
        from cloakflow.tasks.release.report import Section, policy_section, render

        run.report = outcome
        gaps = [f"- {c}: mean moved by {g:.4g}" for c, g in run.evaluation["mean_gap"].items()]
        return render("Toy release", [run.kind.statement, ""], policy_section(
            outcome.verdict, outcome.crossed, outcome.measured, outcome.limits,
            outcome.accepted_risk), [Section("Column means", gaps)])

    def package(self, run: ReleaseRun) -> Package:
        manifest = {"kind": "toy", "dataset": run.profile.name, "rows": run.release.height,
                    "privacy": {"statement": run.kind.statement, "verdict": run.verdict,
                                "policy": run.report.model_dump(mode="json")},
                    "evaluation": run.evaluation}
        report = self.render(run, run.report)
        return Package({"toy": run.release}, manifest, {"report.md": report},
                       "# Toy release\n", report)

    def outcome(self, run: ReleaseRun) -> ToyOutcome:
        return ToyOutcome(release=run.folder, verdict=run.verdict)


def _kind(name: str, copy: bool) -> ReleaseKind:
    return ReleaseKind(name=name, command="(tests)", flow="tests", parameters="tests",
                       evaluations=("mean_gap",), attacks=("exact_copies",),
                       statement="Each column shuffled on its own: no row is a source row.",
                       label_in_clear=False, stages=ToyStages(copy), run_name=name,
                       limits=ToyLimits)


@flow(name="toy-release")
def toy_release(kind: str, params):
    from cloakflow.flows.release import run_release

    return run_release(kind, params)


@pytest.fixture
def toy_files(tiny_files):
    """The tiny table, with a profile whose flat exact-copy limit (1.0, for every kind that has
    it) the toy kinds' own sections override with 1%."""
    import yaml

    from tests.helpers import tiny_profile_dict

    csv, prof = tiny_files
    d = tiny_profile_dict()
    for name in ("toy", "toy-copy"):
        d["privacy"]["policy"][name] = {"max_exact_copy_excess": 0.01}
    prof.write_text(yaml.safe_dump(d))
    return csv, prof


@pytest.fixture
def toy_kinds():
    made = [kinds.register(_kind("toy", copy=False)), kinds.register(_kind("toy-copy", True))]
    yield made
    for k in made:
        kinds.unregister(k.name)


def test_a_kind_declared_in_one_file_publishes_through_the_pipeline(prefect_harness, workdir,
                                                                     toy_files, toy_kinds):
    import mlflow

    from cloakflow.flows.parameters import SynthesizeParameters

    csv, prof = toy_files
    params = SynthesizeParameters(profile_path=str(prof), input_path=str(csv),
                                  out=str(workdir / "releases"))
    assert "toy" in kinds.names()
    out = toy_release("toy", params)
    folder = Path(out.release)
    assert out.verdict == "pass"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "manifest.json",
                                                        "report.md", "toy.parquet"]
    report = (folder / "report.md").read_text()
    assert report.startswith("# Toy release") and "**Policy verdict: pass**" in report
    assert "| max_exact_copy_excess | 0.0000 | 0.01 |" in report
    manifest = json.loads((folder / "manifest.json").read_text())
    released = pl.read_parquet(folder / "toy.parquet")
    assert manifest["files"]["toy"]["rows"] == released.height == manifest["rows"]
    assert manifest["privacy"]["policy"]["measured"]["toy"]["max_exact_copy_excess"] < 0.01
    run = mlflow.get_run(folder.name)  # the release id is the MLflow parent run's
    assert run.data.tags["cloakflow.kind"] == "toy" and run.info.status == "FINISHED"


def test_the_one_gate_blocks_a_copying_kind_and_nothing_is_published(prefect_harness, workdir,
                                                                      toy_files, toy_kinds):
    from cloakflow.flows.parameters import SynthesizeParameters
    from cloakflow.tasks.privacy.policy import PolicyViolation

    csv, prof = toy_files
    out_dir = workdir / "releases"
    params = SynthesizeParameters(profile_path=str(prof), input_path=str(csv),
                                  out=str(out_dir))
    with pytest.raises(PolicyViolation) as info:
        toy_release("toy-copy", params)
    assert any("toy: max_exact_copy_excess" in c for c in info.value.crossed)
    assert not any(out_dir.rglob("manifest.json"))
    accepted = toy_release("toy-copy", params.model_copy(update={"accept_risk": "test table"}))
    assert accepted.verdict == "accepted" and Path(accepted.release, "toy.parquet").is_file()
