"""A multiclass and a numeric target run end to end with their own figures: the codes release's
utility table reads macro one-vs-rest ROC AUC (multiclass) or R² and MAE (numeric), the
importance ranks source columns by the same score, a multiclass synthetic release's TSTR
reads macro ROC AUC, and a numeric target is synthesized as a column of an unconditioned VAE
(TSTR by R²)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

pytestmark = pytest.mark.integration


def _table(n: int = 600, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    return pl.DataFrame({
        "x1": x1.round(3), "x2": x2.round(3), "region": rng.choice(["n", "s", "e"], n),
        "income": np.round(np.exp(10 + 0.5 * x1 + rng.normal(0, 0.2, n)), 2),
        "risk": np.where(x1 > 0.6, "high", np.where(x1 < -0.4, "low", "medium"))})


def _files(tmp: Path, target: dict, features: list[str],
           min_utility: float | None = None) -> tuple[Path, Path]:
    csv, prof = tmp / "k.csv", tmp / f"k-{target['kind']}.yaml"
    _table().write_csv(csv)
    prof.write_text(yaml.safe_dump({
        "name": f"k-{target['kind']}", "target": target, "groups": {"all": features},
        "privacy": {"anonymeter_attacks": 30, "policy": {
            "max_inversion_gain": 1.0, "max_inversion_r2": 1.0, "max_membership_auc": 1.0,
            "max_reidentification": 1.0, "max_dcr_share": 1.0, "max_exact_copy_excess": 1.0,
            "max_membership_tpr": 1.0, "min_utility": min_utility}}}))
    return csv, prof


def _run(capsys, *args: str) -> tuple[int, str]:
    from cloakflow.flows.cli import main

    capsys.readouterr()
    rc = main(list(args))
    return rc, capsys.readouterr().err


def _codes_release(capsys, workdir: Path, csv: Path, prof: Path, out: str,
                   dataset: str) -> tuple[dict, dict]:
    """Run the codes flow quickly through the CLI; (utility rows by metric, manifest)."""
    rc, err = _run(capsys, "run", "--input", str(csv), "--profile", str(prof), "--epochs", "2",
                   "--folds", "3", "--skip-attacks", "--accept-risk", "test", "--out", out)
    assert rc == 0, err
    (release,) = (workdir / "releases" / dataset).iterdir()
    manifest = json.loads((release / "manifest.json").read_text())
    return {r["metric"]: r for r in manifest["utility"]}, manifest


def test_multiclass_and_numeric_targets_publish_their_own_figures(prefect_harness, workdir,
                                                                   capsys):
    out = str(workdir / "releases")
    csv, prof = _files(workdir, {"column": "risk", "kind": "multiclass"},
                       ["x1", "x2", "region", "income"])
    utility, _ = _codes_release(capsys, workdir, csv, prof, out, "k-multiclass")
    assert {"test_roc_auc_ovr", "test_balanced_accuracy", "test_f1_macro"} <= set(utility)
    assert utility["test_roc_auc_ovr"]["ORIGINAL"] > 0.9  # x1 carries the class

    csv, prof = _files(workdir, {"column": "income", "kind": "numeric"},
                       ["x1", "x2", "region", "risk"], min_utility=0.99)  # R², out of reach
    utility, manifest = _codes_release(capsys, workdir, csv, prof, out, "k-numeric")
    assert utility["test_r2"]["ORIGINAL"] > 0.5 and utility[
        "test_mean_absolute_error"]["ORIGINAL"] > 0
    crossed = manifest["privacy"]["policy"]["crossed"]
    assert any(c.startswith("utility: GROUP_ENCODED test_r2 = ") and "below the limit "
               "min_utility 0.99" in c for c in crossed)  # published under the accepted risk
    rc, err = _run(capsys, "synthesize", "--input", str(csv), "--profile", str(prof),
                   "--epochs", "5", "--out", out, "--accept-risk", "test")
    assert rc == 0, err
    (synthetic,) = [p for p in (workdir / "releases" / "k-numeric").iterdir()
                    if (p / "synthetic.parquet").exists()]
    manifest = json.loads((synthetic / "manifest.json").read_text())
    assert manifest["condition"]["column"] is None
    assert manifest["evaluation"]["tstr"]["metric"] == "r2"
    income = pl.read_parquet(synthetic / "synthetic.parquet").get_column("income")
    assert income.dtype == pl.Float64 and income.n_unique() > 50


def test_a_multiclass_synthetic_release_reads_tstr_by_macro_roc_auc(prefect_harness, workdir):
    from cloakflow.flows.parameters import SynthesizeParameters
    from cloakflow.flows.synthesize import synthesize

    csv, prof = _files(workdir, {"column": "risk", "kind": "multiclass"},
                       ["x1", "x2", "region", "income"])
    res = synthesize(SynthesizeParameters(profile_path=str(prof), input_path=str(csv),
                                          epochs=5, out=str(workdir / "releases")))
    manifest = json.loads((Path(res.release) / "manifest.json").read_text())
    tstr = manifest["evaluation"]["tstr"]
    assert tstr["metric"] == "roc_auc_ovr" and len(tstr["class_shares"]["training"]) == 3
    assert tstr["lightgbm"]["trtr"] > 0.9
    # per class, named by label
    assert set(tstr["forest"]["tstr_per_class"]) == {"high", "low", "medium"}
    assert "Per class, the forest's one-vs-rest ROC AUC" in res.report_markdown
    assert "macro ROC AUC (one-vs-rest) on the control rows" in res.report_markdown
    assert set(pl.read_parquet(Path(res.release) / "synthetic.parquet").get_column("risk")) \
        <= {"low", "medium", "high"}
