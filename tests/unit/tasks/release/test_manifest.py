"""The manifest is a typed record: written with exactly the fields that were set and read back
through the same model (a private DP manifest leaves sections out, and stays without them)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from cloakflow.tasks.release.manifest import Manifest
from cloakflow.tasks.release.publish import write_release


def _manifest(**overrides) -> dict:
    model = {"inputs": 3, "code_size": 1, "epochs_run": 2, "best_epoch": 2,
             "best_val_loss": None, "final_loss": 0.1, "seconds": 1.0,
             "seconds_per_epoch": 0.5, "attempts": 1, "init_seed": None,
             "mlflow_run_id": "m1"}
    d = {"dataset": "tiny", "kind": "codes", "source": {"file": "t.csv", "sha256": "ab"},
         "profile": {"name": "tiny"}, "rows": 2, "control_rows": 1, "label": "y", "seed": 1,
         "parameters": {"seed": 1}, "folds": {"scheme": "tutorial", "k": 2, "forest": "sklearn",
                                              "note": "n"},
         "utility": [{"metric": "test_roc_auc", "ORIGINAL": 0.8}], "models": {"whole": model},
         "row_order": "secret", "mlflow": {"tracking_uri": "sqlite:///m.db", "run_id": "r",
                                           "experiment": "cloakflow/tiny"},
         "prefect_flow_run_id": "f", "code_version": "abc",
         "privacy": {"statement": "s", "models_in_release": False,
                     "control_split": {"rows": 1, "fraction": 0.1, "seed": 1,
                                       "stratified_on": "y"}, "gate": "in MLflow"},
         "dp": None, "reused_from_cache": [],
         "columns": [{"name": "latent_0", "group": "whole", "file": "encoded"}]}
    d.update(overrides)
    return d


def test_written_and_read_back_field_for_field(tmp_path):
    import polars as pl

    raw = _manifest(source={"file": "t.csv"}, utility="in the MLflow run only")
    manifest = Manifest.model_validate(raw)
    folder = write_release(tmp_path, "tiny", "r", {"encoded": pl.DataFrame({"latent_0": [1.0,
                                                                                        2.0]})},
                           manifest.to_json())
    written = json.loads((folder / "manifest.json").read_text())
    assert "sha256" not in written["source"] and "verdict" not in written["privacy"]
    assert {k: v for k, v in written.items() if k not in ("files", "created_at")} == raw
    again = Manifest.read(folder)
    assert again.files["encoded"].rows == 2 and again.models["whole"].best_val_loss is None
    assert again.privacy.report is None and again.utility == "in the MLflow run only"


def test_a_foreign_json_is_refused():
    with pytest.raises(ValidationError):
        Manifest.model_validate(_manifest(unexpected=1))
    with pytest.raises(ValidationError):
        Manifest.model_validate({k: v for k, v in _manifest().items() if k != "models"})


def test_schema_versions_old_shape_read_newer_refused_by_name(tmp_path):
    from cloakflow.tasks.data.profile import DatasetProfile
    from cloakflow.tasks.release.manifest import SCHEMA_VERSION
    from tests.helpers import tiny_profile_dict

    old = tmp_path / "old"
    old.mkdir()
    (old / "manifest.json").write_text(json.dumps(_manifest()))  # written before versions
    assert Manifest.read(old).schema_version == 1
    (old / "manifest.json").write_text(json.dumps(_manifest(schema_version=SCHEMA_VERSION + 1)))
    with pytest.raises(ValueError, match=r"schema_version 2; this cloakflow reads versions 1"):
        Manifest.read(old)
    assert DatasetProfile.model_validate(tiny_profile_dict()).version == 1
    assert DatasetProfile.model_validate(tiny_profile_dict(version=2)).version == 2
    with pytest.raises(ValidationError, match="profile version 3"):
        DatasetProfile.model_validate(tiny_profile_dict(version=3))


@pytest.mark.parametrize("name", ["manifest-codes.schema.json",
                                  "manifest-synthetic.schema.json",
                                  "manifest-federation.schema.json"])
def test_the_published_json_schemas_are_the_types(name):
    from cloakflow.tasks.release.manifest import SCHEMAS, json_schema

    assert (SCHEMAS / name).read_text() == json_schema(name), (
        f"schemas/{name} is stale: regenerate every schema with python -c 'from "
        "cloakflow.tasks.release.manifest import SCHEMAS, SCHEMA_TYPES, json_schema; "
        "[(SCHEMAS / n).write_text(json_schema(n)) for n in SCHEMA_TYPES]'")
