"""The federation's checks that run before any process starts: option rules, holder names,
the profile's shared schema, a holder release's split, a holder's ledger in `budget`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloakflow.flows.cli import main
from cloakflow.tasks.data.profile import DatasetProfile
from tests.helpers import tiny_profile_dict


@pytest.mark.parametrize("args, words", [
    (["--weighting", "examples", "--dp-epsilon", "3"], "weighting must be uniform"),
    (["--weighting", "dp-count"], "dp-count needs --dp-epsilon"),
    (["--proximal-mu", "0.5"], "add --strategy fedprox"),
    (["--declared-sizes", "1,2,3"], "add --weighting declared"),
    (["--holders", "a.csv"], "at least 2 holder files"),
])
def test_options_that_conflict_are_refused_by_rule_before_anything_runs(capsys, args, words):
    assert main(["federate", *args]) == 2
    err = capsys.readouterr().err
    assert "invalid options, nothing was run" in err and words in err


def test_a_holder_option_needs_a_federation(capsys):
    for command in ("run", "synthesize"):
        assert main([command, "--holder", "north"]) == 2
        assert "--models-from" in capsys.readouterr().err


def test_holders_are_named_by_file_then_by_folder_and_never_twice(tmp_path):
    from cloakflow.flows.federate import holder_names
    from cloakflow.tasks.federation import FederationFailed

    assert holder_names([Path("/d/site1.csv"), Path("/d/site2.parquet")]) == ["site1", "site2"]
    assert holder_names([Path("/x/hospA/data.csv"), Path("/x/hospB/data.csv")]) == [
        "hospA", "hospB"]
    with pytest.raises(FederationFailed, match="rename one"):
        holder_names([Path("/x/a/data.csv"), Path("/y/a/data.csv")])


def test_the_profile_must_give_one_shared_encoding():
    from cloakflow.flows.federate import check_profile
    from cloakflow.tasks.federation import FederationFailed

    bounds = {"age": {"min": 0, "max": 120}, "income": {"min": 0, "max": 1000},
              "city": {"categories": ["north", "south"], "origin": "data"},
              "owns": {"categories": ["yes", "no"]}}
    profile = DatasetProfile.model_validate(tiny_profile_dict(bounds=bounds))
    with pytest.raises(FederationFailed) as err:
        check_profile(profile, "vae")
    text = str(err.value)
    assert "'tiny'" in text and "rule: shared schema" in text
    assert "['city']" in text and "origin: data" in text  # measured on one table
    assert "['label']" in text and "model 'vae' models the target too" in text


def test_a_holders_release_takes_the_federations_split_unless_told(tmp_path):
    from cloakflow.flows.parameters import RunParameters, SynthesizeParameters
    from cloakflow.tasks.training.federation import adopt_federation_split

    (tmp_path / "manifest.json").write_text(json.dumps({"settings": {"seed": 7},
                                                        "control_fraction": 0.1}))
    adopted = adopt_federation_split(SynthesizeParameters(models_from=str(tmp_path),
                                                          holder="a"))
    assert (adopted.seed, adopted.control_fraction) == (7, 0.1)
    told = adopt_federation_split(RunParameters(models_from=str(tmp_path), holder="a",
                                                seed=3))
    assert (told.seed, told.control_fraction) == (3, 0.1)  # kept: federation_for refuses it


def test_budget_reads_a_holders_ledger_with_the_profiles_cap(tmp_path, monkeypatch, capsys):
    import yaml

    from cloakflow.tasks.privacy import ledger

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLOAKFLOW_LEDGER_DIR", str(tmp_path / "ledger"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    d = tiny_profile_dict()
    d["privacy"]["dp_cap"] = {"epsilon": 10.0, "delta": 1e-5}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(d))
    dp = {"design": "joint", "adjacency": "add_remove", "accountant": "pld", "epsilon": 1.0,
          "delta": 1e-6,
          "mechanisms": [{"models": ["whole"], "noise_multiplier": 2.0, "sampling_rate": 0.01,
                          "sampling": "poisson", "steps": 100, "clip_norm": 0.1,
                          "epsilon": 1.0, "delta": 1e-6}]}
    ledger.append(ledger.make_entry("tiny@north", "run1", "0" * 64, 100, 90, dp))
    assert main(["budget", "tiny@north", "--profile", str(tmp_path / "tiny.yaml")]) == 0
    out = capsys.readouterr().out
    assert "'tiny@north'" in out and "run1" in out and "lifetime cap" in out
