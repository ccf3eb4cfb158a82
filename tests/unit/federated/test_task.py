"""Federated training's holder logic (Flower-free) and Flower's FedAvg aggregation as the
server app configures it: shared schema, local training, weighting, DP over rounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from cloakflow.federated import task
from cloakflow.tasks.data.profile import DatasetProfile
from tests.helpers import make_tiny_frame, release_epsilon_by_dp_accounting, tiny_profile_dict

# public bounds for every feature: the shared schema
BOUNDS = {"age": {"min": 0, "max": 120}, "income": {"min": 0, "max": 1000},
          "city": {"categories": ["north", "south", "east", "west"]},
          "owns": {"categories": ["yes", "no"]}}
SETTINGS = {"num-server-rounds": 3, "local-epochs": 1, "batch-size": 64,
            "learning-rate": 0.01, "seed": 0, "dp-clip": 0.1}
# one DP plan for the DP tests (PLD calibration takes seconds; task.dp_plan caches it)
DP_SETTINGS = {**SETTINGS, "dp-epsilon": 3.0, "dp-delta": 1e-4, "dp-sampling-rate": 0.1}


def _profile(**overrides) -> DatasetProfile:
    return DatasetProfile.model_validate(tiny_profile_dict(bounds=BOUNDS, **overrides))


def _holder(tmp_path: Path, name: str, frame: pl.DataFrame, profile=None,
            model: str = "codes") -> task.HolderData:
    path = tmp_path / f"{name}.csv"
    frame.write_csv(path)
    return task.load_holder(profile or _profile(), path, model=model)


def _record(arrays: dict, weight: float) -> RecordDict:
    return RecordDict({"arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}),
                       "metrics": MetricRecord({"weight": weight})})


def test_holders_share_one_schema_whatever_their_rows(tmp_path):
    a = _holder(tmp_path, "a", make_tiny_frame(300, seed=1))
    # a skewed holder: one city only, incomes in a narrow range; same encoding all the same
    skewed = make_tiny_frame(300, seed=2).with_columns(pl.lit("north").alias("city"),
                                                       (pl.col("income") / 10).round(2))
    b = _holder(tmp_path, "b", skewed)
    assert task.fingerprint(a.schema) == task.fingerprint(b.schema)
    assert a.x.shape[1] == b.x.shape[1]
    assert b.x[:, [i for i, c in enumerate(b.pre.output_columns) if c.startswith("city")]] \
        .sum(axis=0).tolist() == [300.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("change, words", [
    (lambda f: f.with_columns(pl.lit("mars").alias("city")), ["a.csv", "city", "mars"]),
    (lambda f: f.with_columns((pl.col("income") + 5000).alias("income")),
     ["a.csv", "income", "outside the shared public bounds", "rule: shared schema"]),
])
def test_a_table_outside_the_shared_schema_is_refused_by_file_column_and_rule(
        tmp_path, change, words):
    with pytest.raises(task.SchemaMismatch) as err:
        _holder(tmp_path, "a", change(make_tiny_frame(100)))
    assert all(w in str(err.value) for w in words), str(err.value)


def test_features_without_public_bounds_are_refused(tmp_path):
    profile = DatasetProfile.model_validate(tiny_profile_dict(bounds={
        k: v for k, v in BOUNDS.items() if k != "income"}))
    with pytest.raises(task.SchemaMismatch, match=r"\['income'\] have none"):
        _holder(tmp_path, "a", make_tiny_frame(100), profile)


def test_fedavg_of_identical_holders_equals_local_training(tmp_path):
    frame = make_tiny_frame(256, seed=3)
    a, b = _holder(tmp_path, "a", frame), _holder(tmp_path, "b", frame)
    start = task.initial_weights(a.pre, SETTINGS, seed=0)
    local, _ = task.local_train(a, start, SETTINGS, seed=7)  # also holder a's update
    new_a = local
    new_b, _ = task.local_train(b, start, SETTINGS, seed=7)
    records = [_record(task.to_arrays(w), task.holder_weight(h.rows, SETTINGS))
               for w, h in ((new_a, a), (new_b, b))]
    averaged = task.from_arrays({k: v.numpy() for k, v in
                                 aggregate_arrayrecords(records, "weight").items()})
    for name in local:
        for got, want in zip(averaged[name], local[name], strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert any(not np.allclose(w, s) for w, s in zip(local[name], start[name],
                                                          strict=True))


def test_fedavg_weighs_holders_by_their_weight():
    a = {"m/0": np.zeros((2, 2), np.float32)}
    b = {"m/0": np.full((2, 2), 4.0, np.float32)}
    by_rows = aggregate_arrayrecords([_record(a, 100.0), _record(b, 300.0)], "weight")
    np.testing.assert_allclose(by_rows["m/0"].numpy(), 3.0)  # (0 * 100 + 4 * 300) / 400
    uniform = aggregate_arrayrecords([_record(a, 1.0), _record(b, 1.0)], "weight")
    np.testing.assert_allclose(uniform["m/0"].numpy(), 2.0)


def test_holder_weights_keep_dp_counts_private():
    assert task.holder_weight(500, {"weighting": "examples"}) == 500.0
    assert task.holder_weight(500, {"weighting": "uniform", "dp-epsilon": 3}) == 1.0
    assert task.holder_weight(500, {"weighting": "declared", "declared-size": 1000,
                                    "dp-epsilon": 3}) == 1000.0
    assert task.holder_weight(500, {"weighting": "dp-count", "dp-epsilon": 3},
                              dp_rows=512.3) == 512.3
    with pytest.raises(ValueError, match="independently of their rows"):
        task.holder_weight(500, {"weighting": "examples", "dp-epsilon": 3})
    with pytest.raises(ValueError, match="needs --dp-epsilon"):
        task.holder_weight(500, {"weighting": "dp-count"})


@pytest.mark.parametrize("epsilon", [3.0])
def test_dp_over_all_rounds_stays_within_each_holders_budget_and_its_ledger(
        tmp_path, monkeypatch, epsilon):
    import yaml

    from cloakflow.federated.worker import Holder
    from cloakflow.tasks.privacy.ledger import BudgetExhausted, entries

    monkeypatch.setenv("CLOAKFLOW_LEDGER_DIR", str(tmp_path / "ledger"))
    from cloakflow.tasks.privacy.ledger import make_entry, total

    settings = {**DP_SETTINGS, "dp-epsilon": epsilon, "weighting": "uniform",
                "run-name": "r1"}
    d = tiny_profile_dict(bounds=BOUNDS)
    # the cap fits one run, not two (the ledger composes runs under replace-one)
    one_run = make_entry("tiny@a", "x", "", 400, 400,
                         task.dp_plan(settings, 3).section(["whole", "person", "money"]))
    d["privacy"]["dp_cap"] = {"epsilon": 1.01 * total([one_run], 2e-4).epsilon, "delta": 2e-4}
    profile = tmp_path / "tiny.yaml"
    profile.write_text(yaml.safe_dump(d))
    csv = tmp_path / "a.csv"
    make_tiny_frame(400, seed=5).write_csv(csv)
    holder = Holder(str(profile), str(csv), "a")
    holder.rng = np.random.default_rng(0)
    holder.query(settings)  # plans and records the whole run before any round
    dp = holder.report(settings)["dp"]
    # all models, all rounds and the row count, recomputed with dp-accounting (add/remove)
    assert dp["adjacency"] == "add_remove"
    assert dp["mechanisms"][0]["steps"] == 3 * holder.plan.steps_per_round == 3 * 10
    assert dp["mechanisms"][1]["models"] == ["row count"]
    assert release_epsilon_by_dp_accounting(dp, "add_remove") <= epsilon
    assert [e["run_id"] for e in entries("tiny@a", include_mlflow=False)] == ["r1"]
    # the plan binds: the server can neither turn the holder's DP off nor add rounds
    arrays = holder.query(settings)["arrays"]
    for change in ({"dp-epsilon": 0.0}, {"num-server-rounds": 30}, {"dp-clip": 1.0},
                   {"dp-sampling-rate": 0.5}):
        with pytest.raises(RuntimeError, match="refused"):
            holder.train(arrays, {**settings, **change, "server-round": 1})
    # the same holder again would pass its lifetime cap: refused before training (the ledger
    # the next run would check, as ledger.spend checks it)
    with pytest.raises(BudgetExhausted, match="dp_cap"):
        holder._spend(settings, holder.plan)


def test_the_dp_plan_reads_no_rows_and_hides_the_row_count(tmp_path):
    holder = _holder(tmp_path, "a", make_tiny_frame(400, seed=3))
    plan = task.dp_plan(DP_SETTINGS, models=3)  # no rows: one plan for every holder
    assert (plan.sgd.sampling_rate, plan.delta) == (0.1, 1e-4)
    assert plan.steps_per_round == 10 and plan.sgd.steps == 30
    # the spend grows round by round to the planned total, the count alone first
    spends = [plan.spent(r) for r in (0, 1, 3)]
    assert spends == sorted(spends) and spends[0] == pytest.approx(plan.count_epsilon)
    assert spends[-1] == pytest.approx(plan.epsilon, rel=1e-3) and plan.epsilon <= 3.0
    # the DP count is noisy and secret; the divisor of DP-SGD is q times it
    counts = [task.dp_counts(holder, DP_SETTINGS, plan, np.random.default_rng(i))[0]
              for i in range(200)]
    assert abs(np.mean(counts) - 400) < 4 * plan.count_sigma / np.sqrt(200)
    assert np.std(counts) == pytest.approx(plan.count_sigma, rel=0.2)


def test_local_dp_training_runs_the_planned_steps_and_returns_weights(tmp_path):
    holder = _holder(tmp_path, "a", make_tiny_frame(400, seed=4))
    settings = DP_SETTINGS
    plan = task.dp_plan(settings, len(task.members(holder.pre)))
    start = task.initial_weights(holder.pre, settings, seed=0)
    new, metrics = task.local_train(holder, start, settings, plan=plan, dp_rows=410.0,
                                    rng=np.random.default_rng(0))
    assert metrics["steps"] == plan.steps_per_round == plan.sgd.steps // 3
    assert set(new) == {"whole", "person", "money"}
    codes = task.codes_of(holder, new, settings)
    assert codes["whole"].shape[0] == 400
    with pytest.raises(ValueError, match="DP row count"):
        task.local_train(holder, start, settings, plan=plan)


# the plain path shares DP-SGD's step (C = inf, sigma = 0): the DP case covers both wirings
@pytest.mark.parametrize("dp", [pytest.param(False, marks=pytest.mark.slow), True])
def test_fedprox_keeps_local_training_near_the_global_model(tmp_path, dp):
    holder = _holder(tmp_path, "a", make_tiny_frame(400, seed=8))
    settings = {**(DP_SETTINGS if dp else SETTINGS), "local-epochs": 3}
    start = task.initial_weights(holder.pre, settings, seed=0)
    plan = task.dp_plan(settings, len(task.members(holder.pre))) if dp else None

    def drift(mu: float) -> float:
        new, _ = task.local_train(holder, start, {**settings, "proximal-mu": mu}, plan=plan,
                                  dp_rows=400.0 if dp else None,
                                  rng=np.random.default_rng(1) if dp else None)
        return float(np.sqrt(sum(np.sum((a - b) ** 2) for name in new
                                 for a, b in zip(new[name], start[name], strict=True))))

    # the proximal term mu/2 ||w - w_global||^2 pulls every step back towards the global model
    assert drift(100.0) < 0.5 * drift(0.0)


def test_vae_holders_train_the_global_vae_and_count_their_labels_privately(tmp_path):
    profile = DatasetProfile.model_validate(tiny_profile_dict(bounds={
        **BOUNDS, "label": {"categories": ["no", "yes"]}}))
    frame = make_tiny_frame(300, seed=12)
    holder = _holder(tmp_path, "a", frame, profile, model="vae")
    # the VAE models the whole row, the target included: another encoding than the codes'
    codes = _holder(tmp_path, "b", frame, profile)
    assert holder.x.shape[1] == codes.x.shape[1] + 2
    assert task.fingerprint(holder.schema) != task.fingerprint(codes.schema)
    settings = {**DP_SETTINGS, "model": "vae"}
    start = task.initial_weights(holder.pre, settings, seed=0)
    assert list(start) == ["vae"] and task.model_names(holder.pre, settings) == ["vae"]
    plan = task.dp_plan(settings, models=1)
    assert plan.section(["vae"])["mechanisms"][1]["models"] == ["condition histogram"]
    # the condition's (the target's) counts, noised: the holder's labels and its DP row count
    noisy = task.dp_counts(holder, settings, plan, np.random.default_rng(0))
    true = frame["label"].value_counts().sort("label")["count"].to_numpy()
    assert noisy.shape == (2,) and np.all(np.abs(noisy - true) < 6 * plan.count_sigma)
    new, metrics = task.local_train(holder, start, settings, plan=plan,
                                    dp_rows=float(noisy.sum()), rng=np.random.default_rng(1))
    assert [a.shape for a in new["vae"]] == [a.shape for a in start["vae"]]
    assert metrics["steps"] == plan.steps_per_round
    assert any(not np.allclose(a, b) for a, b in zip(new["vae"], start["vae"], strict=True))


def test_partitions_are_disjoint_complete_and_by_column_skewed():
    from cloakflow.flows.federate import PartitionError, partition

    frame = make_tiny_frame(301, seed=6)
    parts = partition(frame, 3, "random", seed=0)
    assert sorted(np.concatenate(parts).tolist()) == list(range(301))
    by_city = partition(frame, 4, "by=city", seed=0)
    cities = [set(frame["city"].to_numpy()[p]) for p in by_city]
    assert sum(len(c) for c in cities) <= 7  # sorted by city: each holder sees few cities
    by_income = partition(frame, 2, "by=income", seed=0)
    assert frame["income"].to_numpy()[by_income[0]].max() <= \
        frame["income"].to_numpy()[by_income[1]].min()
    with pytest.raises(PartitionError, match="no column 'town'"):
        partition(frame, 2, "by=town", seed=0)
    with pytest.raises(PartitionError, match="at least 2"):
        partition(frame, 1, "random", seed=0)
