"""One DP budget for the release: secret randomness, the joint mechanism, the budget split,
replace-one accounting recomputed with dp-accounting, the privacy ledger and its cap, and the
replay attack that a published seed used to allow."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from cloakflow.models.autoencoder import (
    AutoencoderConfig,
    build_autoencoder,
    train_autoencoders_dp,
)
from cloakflow.models.training import dp_sgd, phases
from cloakflow.models.training.dp_sgd import DpSgd, DpSgdConfig, plan, secret_streams
from cloakflow.models.training.phases import PhaseTrainer
from cloakflow.tasks.privacy import ledger
from cloakflow.tasks.privacy.dp import dp_section, plan_dp, private_report
from tests.helpers import release_epsilon_by_dp_accounting
from tests.unit.models.training.dp_sgd_helpers import one_phase_trainer, run_plain

N, D = 300, 10
GROUPS = {"whole": None, "a": [0, 1, 2, 3], "b": [4, 5, 6, 7, 8, 9]}


def _x(n: int = N, d: int = D, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, d), dtype=np.float32)


def _budget(epochs: int = 2, batch: int = 30):
    return plan(N, batch, epochs, DpSgdConfig(target_epsilon=2.0, delta=1e-5,
                                              adjacency="replace_one"))


def _weights(results) -> np.ndarray:
    return np.concatenate([np.ravel(w) for r in results.values()
                           for w in r.autoencoder.get_weights()])


# --------------------------------------------------------------------------- secret randomness
# slow (~30 s, two DP trainings): secret randomness is checked in the default suite by
# test_replaying_with_the_published_seed_does_not_reproduce_the_weights
@pytest.mark.slow
def test_dp_runs_differ_unless_a_generator_is_injected():
    x, cfg, budget = _x(), AutoencoderConfig(batch_size=30), _budget()
    first = _weights(train_autoencoders_dp(x, {"m": None}, cfg, budget, 0.1))
    second = _weights(train_autoencoders_dp(x, {"m": None}, cfg, budget, 0.1))
    assert np.max(np.abs(first - second)) > 1e-3  # OS entropy: a fresh draw every run
    a = _weights(train_autoencoders_dp(x, {"m": None}, cfg, budget, 0.1,
                                       rng=np.random.default_rng(7)))
    b = _weights(train_autoencoders_dp(x, {"m": None}, cfg, budget, 0.1,
                                       rng=np.random.default_rng(7)))
    np.testing.assert_array_equal(a, b)


def test_replaying_with_the_published_seed_does_not_reproduce_the_weights():
    """The old attack: retrain on the true rows with the seed from the manifest and compare.
    With a secret generator the replay lands as far away as a retrain on a neighbouring
    table; only the secret itself reproduces the weights."""
    x, cfg, budget = _x(), AutoencoderConfig(batch_size=30), _budget()
    secret = np.random.SeedSequence().entropy  # what the flow draws and never records
    released = _weights(train_autoencoders_dp(x, {"m": None}, cfg, budget, 0.1,
                                              rng=np.random.default_rng(secret)))
    published_seed = 42
    replay = _weights(train_autoencoders_dp(x, {"m": None}, cfg, budget, 0.1,
                                            rng=np.random.default_rng(published_seed)))
    neighbour = x.copy()
    neighbour[0] = 1.0 - neighbour[0]
    replay_neighbour = _weights(train_autoencoders_dp(
        neighbour, {"m": None}, cfg, budget, 0.1, rng=np.random.default_rng(published_seed)))
    true_distance = np.linalg.norm(released - replay)
    neighbour_distance = np.linalg.norm(released - replay_neighbour)
    assert true_distance > 0.1 * neighbour_distance and true_distance > 1e-2
    np.testing.assert_array_equal(released, _weights(train_autoencoders_dp(
        x, {"m": None}, cfg, budget, 0.1, rng=np.random.default_rng(secret))))


def test_secret_streams_are_independent():
    a, b = secret_streams(2)
    c, = secret_streams(1)
    draws = [g.random(8) for g in (a, b, c)]
    assert not np.allclose(draws[0], draws[1]) and not np.allclose(draws[0], draws[2])
    with pytest.raises(ValueError):
        secret_streams(0)


def test_split_design_models_share_no_batch_and_no_noise(monkeypatch):
    """Under the budget split every model trains on its own secret streams."""
    seen = []
    real = dp_sgd.poisson_batches

    def recording(rows, q, steps, rng):
        for b in real(rows, q, steps, rng):
            seen[-1].append(b)
            yield b

    noises = []
    real_run = PhaseTrainer.run_steps

    def run(self, phase, x, batches, noise, *args, **kw):
        noises[-1].append(np.array(noise))
        return real_run(self, phase, x, batches, noise, *args, **kw)

    monkeypatch.setattr(phases, "poisson_batches", recording)
    monkeypatch.setattr(PhaseTrainer, "run_steps", run)
    x, cfg, budget = _x(), AutoencoderConfig(batch_size=30), _budget(epochs=1)
    for name, cols in (("a", GROUPS["a"]), ("b", GROUPS["b"])):
        seen.append([])
        noises.append([])
        train_autoencoders_dp(x[:, cols], {name: None}, cfg, budget, 0.1)
    assert len(seen[0]) == len(seen[1]) == budget.steps
    assert any(not np.array_equal(p, q) for p, q in zip(seen[0], seen[1], strict=True))
    first = [n[0][0, :5] for n in noises]  # the first noise coordinates of each model
    assert not np.allclose(first[0], first[1])


# --------------------------------------------------------------------------- joint mechanism
def test_joint_mechanism_clips_each_row_over_all_models():
    cfg = AutoencoderConfig()
    x = _x(16)
    models = [build_autoencoder(len(c) if c else D, cfg, seed=i)[0]
              for i, c in enumerate(GROUPS.values())]
    cols = list(GROUPS.values())
    joint, phase = one_phase_trainer(models, [keras.optimizers.Adam(1e-3) for _ in models],
                                     columns=cols)
    alone = [DpSgd(m, keras.optimizers.Adam(1e-3)).per_example_norms(
        x if c is None else x[:, c]) for m, c in zip(models, cols, strict=True)]
    np.testing.assert_allclose(joint.private_norms(phase, x),
                               np.sqrt(np.sum(np.square(alone), axis=0)), rtol=1e-5)
    # one row's clipped contribution over all models' parameters has norm <= C
    clip = 0.05
    now = joint.current()
    for i in range(4):
        mask = np.zeros(len(x), np.float32)
        mask[i] = 1.0
        noise = np.zeros(joint.noise_width(phase), np.float32)
        grads, _, _, _, _ = joint.gradients(phase, now["values"], now["seeds"], x, mask, noise,
                                            None, clip, 0.0, 1.0)
        flat = np.concatenate([np.ravel(np.asarray(g)) for gs in grads.values() for g in gs])
        assert np.linalg.norm(flat) <= clip * (1 + 1e-5)


def test_joint_mechanism_draws_one_batch_and_one_noise_vector_per_step(monkeypatch):
    calls = []
    real_run = PhaseTrainer.run_steps

    def run(self, phase, x, batches, noise, *args, **kw):
        calls.append((len(phase.private), len(batches), noise.shape))
        return real_run(self, phase, x, batches, noise, *args, **kw)

    monkeypatch.setattr(PhaseTrainer, "run_steps", run)
    x, cfg, budget = _x(), AutoencoderConfig(batch_size=30), _budget(epochs=1)
    results = train_autoencoders_dp(x, GROUPS, cfg, budget, 0.1, rng=np.random.default_rng(0))
    total_params = sum(int(np.prod(w.shape)) for r in results.values()
                       for w in r.autoencoder.trainable_weights)
    assert sum(c[1] for c in calls) == budget.steps  # steps counted once, not once per model
    assert all(members == 3 and noise == (k, total_params) for members, k, noise in calls)
    assert {r.dp["steps_run"] for r in results.values()} == {budget.steps}
    assert all(r.seed is None for r in results.values())


def test_joint_without_noise_or_clipping_equals_separate_training():
    """sigma = 0, C = inf: the joint step is each model's own plain step on the shared batch."""
    cfg = AutoencoderConfig()
    x = _x(200)
    cols = list(GROUPS.values())
    joint_models = [build_autoencoder(len(c) if c else D, cfg, seed=i)[0]
                    for i, c in enumerate(cols)]
    alone_models = [build_autoencoder(len(c) if c else D, cfg, seed=i)[0]
                    for i, c in enumerate(cols)]
    joint, phase = one_phase_trainer(joint_models,
                                     [keras.optimizers.Adam(1e-3) for _ in cols], columns=cols)
    rng = np.random.default_rng(3)
    batches = [rng.choice(200, 40, replace=False) for _ in range(4)]
    run_plain(joint, phase, x, batches, 40.0)
    for m, c in zip(alone_models, cols, strict=True):
        xc = np.ascontiguousarray(x if c is None else x[:, c])
        run_plain(*one_phase_trainer(m, keras.optimizers.Adam(1e-3)), xc, batches, 40.0)
    for a, b in zip(joint_models, alone_models, strict=True):
        for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
            np.testing.assert_allclose(wa, wb, atol=1e-6)


# --------------------------------------------------------------------------- release budget
@pytest.mark.parametrize("design", ["joint", "split"])
def test_release_total_recomputed_with_dp_accounting_is_within_the_target(design):
    p = plan_dp(3.0, None, None, 30, 37069, 256, ["whole", "a", "b", "c", "d"], design)
    dp = dp_section(p, {"public": ["x"], "data": []}, "private")
    total = release_epsilon_by_dp_accounting(dp)
    assert total <= 3.0 and total == pytest.approx(3.0, rel=0.02)
    assert dp["adjacency"] == "replace_one" and dp["accountant"] == "pld"
    assert dp["delta"] == 1e-6  # public n: 37,069 training rows
    if design == "joint":
        assert len(dp["mechanisms"]) == 1 and dp["mechanisms"][0]["models"] == list(p.models)
        assert dp["mechanisms"][0]["clip_norm"] == pytest.approx(0.1 * math.sqrt(5))
    else:
        assert [m["models"] for m in dp["mechanisms"]] == [[n] for n in p.models]
        assert all(m["epsilon"] < 3.0 for m in dp["mechanisms"])  # each model's share
        assert len({m["noise_multiplier"] for m in dp["mechanisms"]}) == 1


def test_replace_one_costs_more_than_add_remove_at_the_same_sigma():
    from cloakflow.models.training.accounting import epsilon

    add = epsilon(1.03, 256 / 37069, 4344, 1e-6, "pld", adjacency="add_remove").epsilon
    rep = epsilon(1.03, 256 / 37069, 4344, 1e-6, "pld", adjacency="replace_one").epsilon
    assert rep > 1.5 * add
    with pytest.raises(ValueError, match="RDP"):
        epsilon(1.03, 0.01, 100, 1e-6, "rdp", adjacency="replace_one")


def test_private_report_keeps_no_private_row_figure():
    p = plan_dp(2.0, 1e-5, 0.1, 2, N, 30, ["whole", "a"], "joint")
    dp = dp_section(p, {"public": [], "data": ["x"]}, "private", epochs=2)
    model = {"inputs": 3, "code_size": 1, "final_loss": 0.1, "seconds": 2.0,
             "seconds_per_epoch": 1.0, "best_val_loss": None,
             "dp": {"epsilon": 2.0, "clipped_share_per_epoch": [0.5]}}
    manifest = {"source": {"file": "t.csv", "sha256": "ab"}, "utility": [{"metric": "roc"}],
                "parameters": {"privacy_attacks": True, "accept_risk": None},
                "models": {"whole": model, "a": model}, "dp": dp,
                "privacy": {"statement": "s", "models_in_release": False,
                            "control_split": {"rows": 30}, "verdict": "pass",
                            "policy": {"measured": {}}, "report": {"releases": {}}}}
    out = private_report(manifest)
    assert "sha256" not in out["source"] and isinstance(out["utility"], str)
    assert set(out["privacy"]) == {"statement", "models_in_release", "control_split", "gate"}
    for m in out["models"].values():
        assert not {"final_loss", "seconds", "seconds_per_epoch"} & set(m)
        assert "clipped_share_per_epoch" not in m["dp"]
    figures = {f["manifest_key"]: f for f in dp["private_row_figures"]}
    assert figures["utility"]["covered"] is False and "MLflow" in figures["utility"]["where"]
    assert "Caveat: columns x" in dp["statement"]  # bounds measured on the data
    assert "This run used 2 epochs instead of the defaults" in dp["hyperparameters"]
    # no attacks, risk accepted: the manifest says so and keeps the reason in MLflow
    skipped = private_report({**manifest, "parameters": {"privacy_attacks": False,
                                                         "accept_risk": "owner's reason"}})
    assert "no attacks were run" in skipped["privacy"]["gate"]
    assert "owner's reason" not in str(skipped)


def test_impossible_or_invalid_dp_settings_are_refused_before_anything_runs(capsys):
    from cloakflow.flows.cli import main
    from cloakflow.tasks.privacy.dp import DpPlanError

    with pytest.raises(DpPlanError, match="cannot spend epsilon"):
        plan_dp(1e-4, 1e-6, None, 30, 1000, 500, ["whole"], "joint")
    for bad in (["--dp-epsilon", "0"], ["--dp-epsilon", "inf"], ["--dp-clip", "0"],
                ["--dp-epochs", "0"]):
        assert main(["run", "tiny", *bad]) == 2
        err = capsys.readouterr().err
        assert "invalid options, nothing was run" in err and bad[0] in err


# --------------------------------------------------------------------------- ledger
def test_ledger_composes_runs_and_refuses_past_the_cap(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOAKFLOW_LEDGER_DIR", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    p = plan_dp(1.0, 1e-6, None, 30, 37069, 256, ["whole", "a"], "joint")
    dp = dp_section(p, {}, "private")
    cap = {"epsilon": 1.45, "delta": 1e-5}  # two runs compose to ~1.28, three to ~1.60
    assert ledger.entries("bank") == []
    for i in range(2):
        ledger.check_cap("bank", dp, cap)
        ledger.append(ledger.make_entry("bank", f"run{i}", "ab" * 32, 41188, 37069, dp))
    recorded = ledger.entries("bank")
    assert [e["run_id"] for e in recorded] == ["run0", "run1"]
    spent = ledger.total(recorded, 1e-5)
    assert 1.0 < spent.epsilon < 2.0 < spent.basic_epsilon + 1e-9  # tighter than 1 + 1
    with pytest.raises(ledger.BudgetExhausted, match="dp_cap"):
        ledger.check_cap("bank", dp, cap)  # a third run would pass the cap
    text = ledger.summary("bank", cap)
    assert "run0" in text and "total: epsilon" in text and "lifetime cap" in text
    (tmp_path / "bank.jsonl").write_text("not json\n")
    with pytest.raises(ValueError, match="line 1"):
        ledger.entries("bank", include_mlflow=False)


def test_concurrent_runs_cannot_both_pass_a_cap_that_fits_one(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setenv("CLOAKFLOW_LEDGER_DIR", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    ledger.entries("bank")  # create the MLflow store once, before the threads
    dp = dp_section(plan_dp(1.0, 1e-6, None, 30, 37069, 256, ["whole"], "joint"), {}, "private")
    cap = {"epsilon": 1.1, "delta": 1e-6}  # one run of epsilon 1 fits, two do not

    def run(i: int) -> str:
        try:
            ledger.spend(dp, cap, ledger.make_entry("bank", f"run{i}", "ab", 10, 9, dp))
            return "recorded"
        except ledger.BudgetExhausted:
            return "refused"

    with ThreadPoolExecutor(4) as pool:
        outcomes = sorted(pool.map(run, range(4)))
    assert outcomes == ["recorded"] + ["refused"] * 3
    assert len(ledger.entries("bank")) == 1
