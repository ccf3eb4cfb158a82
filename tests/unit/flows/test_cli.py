"""The CLI's options come from the flows' parameter models: every field has an option, the
defaults are the models' own, and bad values are refused before anything runs."""

from __future__ import annotations

import pytest

from cloakflow.flows import cli
from cloakflow.flows.parameters import FrontierParameters, RunParameters


@pytest.mark.parametrize(("command", "model"), [("run", RunParameters),
                                                ("frontier", FrontierParameters)])
def test_every_parameter_has_an_option_and_defaults_stay_in_the_model(command, model):
    parser = cli._parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    dests = {a.dest for a in sub._actions if a.dest != "help"}
    assert dests == set(model.model_fields) | {"verbose"}  # the console's, no parameter
    # nothing given: nothing passed on, so the model's defaults apply
    args = parser.parse_args([command])
    assert cli._values(args) == {}
    assert model(**cli._values(args)) == model()


def test_options_parse_to_the_model_types():
    args = cli._parser().parse_args([
        "run", "tiny", "--input", "t.csv", "--epochs", "3", "--noise", "0.5", "--no-cache",
        "--skip-attacks", "--dp-design", "joint", "--fold-scheme", "tutorial"])
    params = RunParameters(**cli._values(args))
    assert (params.dataset, params.input_path, params.epochs, params.noise_multiplier) == (
        "tiny", "t.csv", 3, 0.5)
    assert params.use_cache is False and params.privacy_attacks is False
    assert params.dp_design == "joint" and params.fold_scheme == "tutorial"
    sweep = cli._parser().parse_args(["frontier", "--noise", "0,0.5,2"])
    assert FrontierParameters(**cli._values(sweep)).multipliers == [0.0, 0.5, 2.0]


def test_bad_choice_and_bad_value_are_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        cli._parser().parse_args(["run", "--forest", "xgboost"])
    assert exc.value.code == 2 and "invalid choice: 'xgboost'" in capsys.readouterr().err
    assert cli.main(["run", "--epochs", "0"]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "--epochs: Input should be greater than or equal to 1" in err
    assert cli.main(["run", "--noise", "-1"]) == cli.EXIT_BAD_INPUT
    assert "--noise:" in capsys.readouterr().err


def test_a_broken_profile_is_refused_before_any_server_starts(tmp_path, capsys):
    import time

    from cloakflow.flows.cli import main

    bad = tmp_path / "p.yaml"
    bad.write_text("name: t\ntarget: {column: y, positive: 1}\ngroups: {g: [a_typo, b]}\n"
                   "columns: {a_type: numeric}\n")
    t = time.perf_counter()
    assert main(["run", "--profile", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "INPUT REJECTED, nothing was run" in err and "'a_type' ~ 'a_typo'" in err
    assert time.perf_counter() - t < 10  # no Prefect server was started for it


def test_a_broken_limit_of_any_kind_is_refused_before_any_server_starts(tmp_path, capsys):
    import time

    import yaml

    from cloakflow.flows.cli import main
    from tests.helpers import tiny_profile_dict

    d = tiny_profile_dict()
    d["privacy"]["policy"] = {"synthetic": {"max_dcr_share": 5}}  # not the kind being run
    bad = tmp_path / "p.yaml"
    bad.write_text(yaml.safe_dump(d))
    t = time.perf_counter()
    assert main(["run", "--profile", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "INPUT REJECTED, nothing was run" in err and f"{bad}: " in err
    assert "privacy.policy.synthetic.max_dcr_share" in err
    assert time.perf_counter() - t < 15  # no Prefect server, nothing trained
