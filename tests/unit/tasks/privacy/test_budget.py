"""The one budget type: mechanisms compose as dp-accounting composes them, the solver meets its
target with each count at its share, and every manifest figure is recomputable from the
section with dp-accounting directly."""

from __future__ import annotations

import dp_accounting
import pytest

from cloakflow.models.training.accounting import epsilon as sgd_epsilon
from cloakflow.tasks.privacy.budget import Budget, Mechanism, compose, solve

DELTA = 1e-6


def _by_dp_accounting(entries: list[dict], delta: float, adjacency: str) -> float:
    """Compose manifest entries with dp-accounting alone (no cloakflow code)."""
    relation = (dp_accounting.NeighboringRelation.REPLACE_ONE if adjacency == "replace_one"
                else dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE)
    acc = dp_accounting.pld.PLDAccountant(relation)
    for m in entries:
        gaussian = dp_accounting.GaussianDpEvent(m["noise_multiplier"])
        acc.compose(gaussian if m["sampling_rate"] == 1.0 and m["steps"] == 1 else
                    dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(
                        m["sampling_rate"], gaussian), m["steps"]))
    return float(acc.get_epsilon(delta))


@pytest.mark.parametrize("adjacency", ["add_remove", "replace_one"])
def test_a_budget_is_its_mechanisms_composed_by_dp_accounting(adjacency):
    sgd = sgd_epsilon(1.1, 0.02, 300, DELTA, "pld", adjacency=adjacency)
    budget = Budget(3.0, DELTA, adjacency, (
        Mechanism.dp_sgd(("whole",), sgd, 0.1), Mechanism.dp_sgd(("group",), sgd, 0.1),
        Mechanism.gaussian(("row count",), 20.0), Mechanism.gaussian(("knots",), 30.0, 3.0)))
    section = budget.section()
    assert section["epsilon"] == pytest.approx(_by_dp_accounting(
        section["mechanisms"], DELTA, adjacency), abs=1e-6)
    # each entry's own epsilon, and the sensitivity of a count: sigma per count / sensitivity
    assert section["mechanisms"][0]["epsilon"] == pytest.approx(sgd.epsilon, abs=1e-6)
    knots = section["mechanisms"][3]
    assert knots["noise_multiplier"] == pytest.approx(10.0) and knots["clip_norm"] == 3.0
    assert knots["noise_per_count"] == 30.0 and "noise_per_count" not in section["mechanisms"][2]
    # two equal runs compose below twice one (not by adding epsilons)
    assert budget.epsilon < sum(m["epsilon"] for m in section["mechanisms"])
    assert compose([], DELTA, adjacency) == 0.0


def test_solve_meets_the_target_with_each_count_at_its_share():
    budget = solve(3.0, DELTA, "add_remove", sampling_rate=0.01, steps=1000, clip_norm=0.1,
                   trains=("vae",), counts=((("condition histogram",), 0.05, 1.0),
                                            (("knots",), 0.30, 4.0)))
    sgd, hist, knots = budget.mechanisms
    assert sgd.kind == "dp-sgd" and sgd.covers == ("vae",) and sgd.steps == 1000
    assert budget.epsilon <= 3.0 + 1e-4 and budget.epsilon > 2.99
    alone = budget.alone()
    assert alone["condition histogram"] == pytest.approx(0.15, abs=1e-3)
    assert alone["knots"] == pytest.approx(0.90, abs=1e-3)
    assert knots.noise_per_count == pytest.approx(4.0 * knots.noise_multiplier)
    assert budget.epsilon == pytest.approx(_by_dp_accounting(
        budget.section()["mechanisms"], DELTA, "add_remove"), abs=1e-6)
    with pytest.raises(ValueError):
        solve(-1.0, DELTA, "add_remove", sampling_rate=0.01, steps=10, clip_norm=1.0,
              trains=("m",))


def test_one_statement_writer_says_every_part_in_one_order():
    from cloakflow.tasks.privacy.budget import statement

    text = statement("The rows are", 2.0, 1e-6, "replacing one row", covered="a histogram",
                     not_covered="the evaluation.", notes=("Sampling is post-processing.", ""),
                     hyperparameters="C was chosen on a public table.")
    assert text == ("The rows are (2, 1e-06)-differentially private with respect to replacing "
                    "one row: a histogram, composed by dp-accounting's PLD accountant. Sampling "
                    "is post-processing. Not covered: the evaluation. C was chosen on a public "
                    "table.")
    per_holder = statement("Each holder's model is", None, None, "adding or removing one row",
                           covered="DP-SGD", not_covered="timings.")
    assert per_holder.startswith("Each holder's model is (epsilon, delta)-differentially")
