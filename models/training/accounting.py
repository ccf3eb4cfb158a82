"""Privacy accounting for DP-SGD with Google's ``dp-accounting`` library.

Forward: the (epsilon, delta) spent by ``steps`` noisy gradient steps with noise multiplier
sigma and sampling rate q. Inverse: the sigma that spends a target epsilon (the library's
``calibrate_dp_mechanism``, Brent's method over fresh accountants).

How batches are drawn is part of the claim:

- ``poisson``: each row joins each step independently with probability q (the sampling the
  amplification-by-subsampling analysis assumes); the event is ``steps`` self-composed
  ``PoissonSampled(Gaussian(sigma))``.
- ``shuffle``: fixed-size batches from a fresh permutation every epoch. A row then takes part in
  exactly one step per epoch, and no subsampling amplification is claimed: the event is
  ``epochs`` self-composed ``Gaussian(sigma)``. This is a valid, much larger, epsilon.

Adjacency (which pairs of tables count as neighbours) is part of the claim too:

- ``add_remove``: one table has one row more than the other. The row count is then private: a
  release that publishes the exact count (or anything computed from it, such as q = b/n or a
  delta chosen from n) tells neighbours apart, whatever epsilon says.
- ``replace_one``: the tables have the same size and differ in one row's values; the count is
  public. This is the honest relation for releases with one row per training row (codes).
  dp-accounting's RDP accountant does not support it for Poisson sampling; its PLD accountant
  does, so replace-one budgets are always PLD figures.

This module imports neither Prefect, MLflow nor polars.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import asdict, dataclass
from typing import Literal

Accountant = Literal["rdp", "pld"]
Sampling = Literal["poisson", "shuffle"]
Adjacency = Literal["add_remove", "replace_one"]
ADJACENCY_TEXT = {"add_remove": "adding or removing one row (the row count is private)",
                  "replace_one": "replacing one row's values (the row count is public)"}

# Search range of the inverse. PLD discretises the privacy loss; below sigma ~0.25 its grid
# grows past memory, and epsilons that need such sigmas (> ~50 here) are no useful claim.
SIGMA_RANGE = {"rdp": (0.05, 1000.0), "pld": (0.25, 1000.0)}


@dataclass(frozen=True)
class DpBudget:
    """A spent (or planned) privacy budget and everything that determines it."""

    epsilon: float
    delta: float
    noise_multiplier: float
    sampling_rate: float
    steps: int
    epochs: float
    accountant: str
    sampling: str
    adjacency: str = "add_remove"

    def to_dict(self) -> dict:
        return asdict(self)


def default_delta(n_rows: int) -> float:
    """A delta well below 1/n: the power of ten at or below 1/(10 n)."""
    if n_rows < 1:
        raise ValueError("n_rows must be positive")
    return 10.0 ** math.floor(math.log10(1.0 / (10 * n_rows)))


def dp_event(noise_multiplier: float, sampling_rate: float, steps: int,
             sampling: Sampling = "poisson"):
    """The dp-accounting event of a DP-SGD run."""
    import dp_accounting

    if noise_multiplier <= 0:
        raise ValueError("noise_multiplier must be positive for a finite epsilon")
    if not 0 < sampling_rate <= 1:
        raise ValueError(f"sampling_rate must be in (0, 1], got {sampling_rate}")
    gaussian = dp_accounting.GaussianDpEvent(noise_multiplier)
    if sampling == "poisson":
        return dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(sampling_rate, gaussian), steps)
    if sampling == "shuffle":
        return dp_accounting.SelfComposedDpEvent(gaussian, math.ceil(steps * sampling_rate))
    raise ValueError(f"sampling must be 'poisson' or 'shuffle', not {sampling!r}")


def make_accountant(accountant: Accountant = "rdp", adjacency: Adjacency = "add_remove"):
    """A fresh dp-accounting accountant for the given neighbouring relation.

    Raises:
        ValueError: unknown accountant or adjacency, or RDP with ``replace_one`` (dp-accounting's
            RDP accountant cannot bound Poisson-sampled events under replace-one).
    """
    import dp_accounting
    from dp_accounting.pld import pld_privacy_accountant
    from dp_accounting.rdp import rdp_privacy_accountant

    relations = {"add_remove": dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE,
                 "replace_one": dp_accounting.NeighboringRelation.REPLACE_ONE}
    if adjacency not in relations:
        raise ValueError(f"adjacency must be 'add_remove' or 'replace_one', not {adjacency!r}")
    if accountant == "rdp":
        if adjacency == "replace_one":
            raise ValueError("dp-accounting's RDP accountant does not support replace-one "
                             "adjacency for Poisson sampling: use the PLD accountant")
        return rdp_privacy_accountant.RdpAccountant(neighboring_relation=relations[adjacency])
    if accountant == "pld":
        return pld_privacy_accountant.PLDAccountant(neighboring_relation=relations[adjacency])
    raise ValueError(f"accountant must be 'rdp' or 'pld', not {accountant!r}")


@contextlib.contextmanager
def _quiet():
    """dp-accounting's RDP code logs a warning for every order it drops (small alphas whose
    series do not converge at large q); the bound stays valid, so keep them out of the logs."""
    log = logging.getLogger("absl")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def histogram_event(noise_multiplier: float):
    """The dp-accounting event of one Gaussian-mechanism histogram (counts of a categorical
    column, each row in one cell): N(0, sigma^2) noise on every count, sigma = noise_multiplier
    (adding or removing a row moves one count by 1; under replace-one dp-accounting takes
    sensitivity 2, above the true sqrt(2), so the figure stays an upper bound)."""
    import dp_accounting

    if noise_multiplier <= 0:
        raise ValueError("noise_multiplier must be positive for a finite epsilon")
    return dp_accounting.GaussianDpEvent(noise_multiplier)


def epsilon(noise_multiplier: float, sampling_rate: float, steps: int, delta: float,
            accountant: Accountant = "rdp", sampling: Sampling = "poisson",
            adjacency: Adjacency = "add_remove", extra_events: tuple = ()) -> DpBudget:
    """The epsilon spent at ``delta`` by ``steps`` steps, composed with ``extra_events`` (other
    mechanisms on the same rows, e.g. a ``histogram_event``)."""
    acc = make_accountant(accountant, adjacency)
    acc.compose(dp_event(noise_multiplier, sampling_rate, steps, sampling))
    for event in extra_events:
        acc.compose(event)
    with _quiet():
        spent = float(acc.get_epsilon(delta))
    return DpBudget(spent, delta, noise_multiplier, sampling_rate, steps,
                    steps * sampling_rate, accountant, sampling, adjacency)


def composed_epsilon(mechanisms: list[DpBudget], delta: float,
                     adjacency: Adjacency = "replace_one", accountant: Accountant = "pld") -> float:
    """Epsilon at ``delta`` of several DP-SGD runs on the same rows, composed by the accountant.

    Each mechanism contributes its own event (sigma, q, steps, sampling) to one accountant, so
    runs with different settings compose tightly (not by adding epsilons).
    """
    if not mechanisms:
        return 0.0
    acc = make_accountant(accountant, adjacency)
    for m in mechanisms:
        acc.compose(dp_event(m.noise_multiplier, m.sampling_rate, m.steps, m.sampling))
    with _quiet():
        return float(acc.get_epsilon(delta))


def noise_multiplier_for(target_epsilon: float, delta: float, sampling_rate: float, steps: int,
                         accountant: Accountant = "rdp", sampling: Sampling = "poisson",
                         tol: float = 1e-4, adjacency: Adjacency = "add_remove",
                         extra_events: tuple = ()) -> DpBudget:
    """The smallest sigma whose run, composed with ``extra_events``, spends at most
    ``target_epsilon`` at ``delta`` (the returned budget's epsilon is the composed total)."""
    import dp_accounting

    def event(s):
        run = dp_event(s, sampling_rate, steps, sampling)
        return dp_accounting.ComposedDpEvent([run, *extra_events]) if extra_events else run

    if target_epsilon <= 0:
        raise ValueError("target_epsilon must be positive")
    low, high = SIGMA_RANGE[accountant]

    def calibrate(a: float, b: float) -> float:
        with _quiet():
            return dp_accounting.calibrate_dp_mechanism(
                lambda: make_accountant(accountant, adjacency),
                event, target_epsilon, delta,
                bracket_interval=dp_accounting.ExplicitBracketInterval(a, b), tol=tol)

    try:
        sigma = None
        if accountant == "pld" and adjacency == "add_remove":
            # RDP bounds the same events from above, in milliseconds: its sigma brackets the
            # PLD root from above, which spares the PLD search the small sigmas, whose
            # privacy-loss distributions are the slow ones to build (same root, within tol)
            try:
                with _quiet():
                    upper = dp_accounting.calibrate_dp_mechanism(
                        lambda: make_accountant("rdp", adjacency), event, target_epsilon,
                        delta, bracket_interval=dp_accounting.ExplicitBracketInterval(
                            SIGMA_RANGE["rdp"][0], high), tol=tol)
                sigma = calibrate(max(low, upper / 2), min(high, upper * 1.01))
            except (ValueError, RuntimeError):
                sigma = None  # not bracketed: search the whole range
        if sigma is None:
            sigma = calibrate(low, high)
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"no noise multiplier in [{low}, {high}] spends epsilon "
                         f"{target_epsilon} at delta {delta} over {steps} steps with q = "
                         f"{sampling_rate:.4g} ({accountant}, {sampling}, {adjacency}): "
                         f"{exc}") from exc
    return epsilon(float(sigma), sampling_rate, steps, delta, accountant, sampling, adjacency,
                   extra_events)


def histogram_epsilon(noise_multiplier: float, delta: float, *,
                      adjacency: Adjacency = "add_remove") -> float:
    """Epsilon at ``delta`` of one Gaussian histogram (``histogram_event``) alone (PLD)."""
    acc = make_accountant("pld", adjacency)
    acc.compose(histogram_event(noise_multiplier))
    with _quiet():
        return float(acc.get_epsilon(delta))


def histogram_noise_for(target_epsilon: float, delta: float, *, adjacency: Adjacency,
                        tol: float = 1e-4) -> float:
    """The smallest sigma of a Gaussian histogram (``histogram_event``) that alone spends at
    most ``target_epsilon`` at ``delta`` (PLD accountant).

    Raises:
        ValueError: no sigma in [0.25, 1e5] does (below 0.25 the PLD grid outgrows memory).
    """
    import dp_accounting

    if target_epsilon <= 0:
        raise ValueError("target_epsilon must be positive")
    try:
        with _quiet():
            return float(dp_accounting.calibrate_dp_mechanism(
                lambda: make_accountant("pld", adjacency), histogram_event, target_epsilon,
                delta, bracket_interval=dp_accounting.ExplicitBracketInterval(
                    SIGMA_RANGE["pld"][0], 1e5),
                tol=tol))
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"no histogram noise spends epsilon {target_epsilon} at delta "
                         f"{delta}: {exc}") from exc


def accountants_for(adjacency: Adjacency) -> tuple[Accountant, ...]:
    """Accountants that can bound a Poisson-sampled run under ``adjacency``."""
    return ("rdp", "pld") if adjacency == "add_remove" else ("pld",)


def best_of(noise_multiplier: float, sampling_rate: float, steps: int, delta: float,
            sampling: Sampling = "poisson", adjacency: Adjacency = "add_remove") -> DpBudget:
    """RDP and PLD both bound the same run; the tighter (smaller) epsilon is the claim (PLD
    alone under replace-one)."""
    return min((epsilon(noise_multiplier, sampling_rate, steps, delta, a, sampling, adjacency)
                for a in accountants_for(adjacency)), key=lambda b: b.epsilon)
