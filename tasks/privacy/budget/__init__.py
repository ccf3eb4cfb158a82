"""One privacy budget type for every release kind: the mechanisms that read the private rows,
composed into one (epsilon, delta) by dp-accounting's PLD accountant.

A release's DP is a :class:`Budget`: its target, delta, adjacency and its
:class:`Mechanism` s: DP-SGD runs (a sampled Gaussian, per phase with a private term:
``Mechanism.dp_sgd``) and Gaussian counts (a histogram, the DP row count, the tree of counts
behind DP quantile knots: ``Mechanism.gaussian``). ``Budget.epsilon`` composes their events in
order; ``Budget.section()`` is the part of the manifest's and the ledger's ``dp`` section every
kind shares (its ``mechanisms`` list is what the ledger composes, and every figure in it is
recomputable with dp-accounting directly). Each kind's statement, in words, stays with its
planner.

The planners of the release kinds sit on top: :func:`solve` fixes each Gaussian count's noise
at its share of the target and solves DP-SGD's sigma for the rest (synthetic rows, a federated
holder); the codes planner composes its k DP-SGD runs (``tasks.privacy.dp``).

This package imports neither Prefect, MLflow nor polars.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from cloakflow.models.training import accounting
from cloakflow.models.training.accounting import DpBudget

ACCOUNTANT = "pld"


@dataclass(frozen=True)
class Mechanism:
    """One mechanism that reads the private rows.

    Attributes:
        covers: what it trains or counts (model names, ``"condition histogram"``, ...): the
            manifest's ``models``.
        noise_multiplier: sigma over the L2 sensitivity.
        sampling_rate, steps, sampling: DP-SGD's Poisson rate q and steps (a count: 1, 1).
        clip_norm: DP-SGD's per-row clip C; a count's L2 sensitivity.
        noise_per_count: a count with sensitivity above 1: the noise sd on each count.
        kind: ``"dp-sgd"`` (a sampled Gaussian, ``accounting.dp_event``) or ``"gaussian"``
            (one Gaussian mechanism, ``accounting.histogram_event``).
    """

    covers: tuple[str, ...]
    noise_multiplier: float
    sampling_rate: float = 1.0
    steps: int = 1
    sampling: str = "poisson"
    clip_norm: float = 1.0
    noise_per_count: float | None = None
    kind: str = "gaussian"

    @classmethod
    def dp_sgd(cls, covers, budget: DpBudget, clip_norm: float) -> Mechanism:
        """DP-SGD (Abadi et al. 2016) over ``covers`` with ``budget``'s sigma, q and steps."""
        return cls(tuple(covers), budget.noise_multiplier, budget.sampling_rate, budget.steps,
                   budget.sampling, clip_norm, kind="dp-sgd")

    @classmethod
    def gaussian(cls, covers, sigma: float, sensitivity: float = 1.0) -> Mechanism:
        """Gaussian noise of sd ``sigma`` on counts whose L2 sensitivity is ``sensitivity``."""
        return cls(tuple(covers), sigma / sensitivity, clip_norm=sensitivity,
                   noise_per_count=sigma if sensitivity != 1.0 else None)

    def event(self):
        """Its dp-accounting event."""
        if self.kind == "dp-sgd":
            return accounting.dp_event(self.noise_multiplier, self.sampling_rate, self.steps,
                                       self.sampling)
        return accounting.histogram_event(self.noise_multiplier)

    def epsilon(self, delta: float, adjacency: str) -> float:
        """Its epsilon alone at ``delta`` (PLD; computed once per mechanism and delta)."""
        return _alone(self.kind, self.noise_multiplier, self.sampling_rate, self.steps,
                      self.sampling, delta, adjacency)

    def entry(self, delta: float, adjacency: str, digits: int | None = 6) -> dict:
        """The manifest's and the ledger's entry (``digits``: epsilon rounding, None raw)."""
        eps = self.epsilon(delta, adjacency)
        out = {"models": list(self.covers), "noise_multiplier": self.noise_multiplier,
               "sampling_rate": self.sampling_rate, "sampling": self.sampling,
               "steps": self.steps, "clip_norm": self.clip_norm}
        if self.noise_per_count is not None:
            out["noise_per_count"] = self.noise_per_count
        out["epsilon"] = eps if digits is None else round(eps, digits)
        out["delta"] = delta
        return out


@functools.lru_cache(maxsize=256)
def _alone(kind: str, noise_multiplier: float, sampling_rate: float, steps: int,
           sampling: str, delta: float, adjacency: str) -> float:
    """One mechanism's epsilon alone, whatever it covers (k equal DP-SGD runs: computed once)."""
    return compose([Mechanism((), noise_multiplier, sampling_rate, steps, sampling, kind=kind)],
                   delta, adjacency)


def compose(mechanisms, delta: float, adjacency: str) -> float:
    """Epsilon at ``delta`` of ``mechanisms`` on the same rows, composed in order (PLD)."""
    if not mechanisms:
        return 0.0
    acc = accounting.make_accountant(ACCOUNTANT, adjacency)
    for m in mechanisms:
        acc.compose(m.event())
    with accounting._quiet():
        return float(acc.get_epsilon(delta))


@dataclass(frozen=True)
class Budget:
    """A release's DP: every mechanism that read the private rows and what they spend together.

    Attributes:
        target_epsilon: what the owner asked for (``--dp-epsilon``).
        delta: the delta every figure is stated at.
        adjacency: ``replace_one`` (the row count is public) or ``add_remove``.
        mechanisms: in the order they compose.
    """

    target_epsilon: float
    delta: float
    adjacency: str
    mechanisms: tuple[Mechanism, ...] = field(default_factory=tuple)

    @functools.cached_property
    def epsilon(self) -> float:
        """All mechanisms composed (PLD) at ``delta``."""
        return compose(self.mechanisms, self.delta, self.adjacency)

    def alone(self) -> dict[str, float]:
        """Each mechanism's epsilon alone, by the names it covers (joined by ", ")."""
        return {", ".join(m.covers): m.epsilon(self.delta, self.adjacency)
                for m in self.mechanisms}

    def section(self, digits: int | None = 6) -> dict:
        """The part of the ``dp`` section every kind shares: epsilon, delta, target,
        adjacency, accountant and the mechanisms (what the ledger composes)."""
        eps = self.epsilon if digits is None else round(self.epsilon, digits)
        return {"epsilon": eps, "delta": self.delta, "target_epsilon": self.target_epsilon,
                "adjacency": self.adjacency, "accountant": ACCOUNTANT,
                "mechanisms": [m.entry(self.delta, self.adjacency, digits)
                               for m in self.mechanisms]}


def statement(released: str, epsilon: float | None, delta: float | None, adjacency: str, *,
              covered: str, not_covered: str, notes: tuple[str, ...] = (),
              composed: str = "composed by dp-accounting's PLD accountant",
              hyperparameters: str = "") -> str:
    """The one DP statement writer of every release kind, in one order: what is
    differentially private (``released``, the sentence's subject and verb) at (epsilon, delta)
    (None: stated per holder) with respect to ``adjacency``, what read the rows and is covered
    and how it was composed, the kind's own notes, what is not covered, and how the
    hyperparameters were chosen (``hyperparameter_statement``).

    Returns:
        ``"<released> (e, d)-differentially private with respect to <adjacency>: <covered>,
        <composed>. <notes> Not covered: <not_covered> <hyperparameters>"``.
    """
    bound = "(epsilon, delta)" if epsilon is None else f"({epsilon:.3g}, {delta:g})"
    parts = [f"{released} {bound}-differentially private with respect to {adjacency}: "
             f"{covered}, {composed}.", *notes, f"Not covered: {not_covered}", hyperparameters]
    return " ".join(p.strip() for p in parts if p and p.strip())


def solve(target_epsilon: float, delta: float, adjacency: str, *, sampling_rate: float,
          steps: int, clip_norm: float, trains: tuple[str, ...],
          counts: tuple[tuple[tuple[str, ...], float, float], ...] = ()) -> Budget:
    """A budget of Gaussian counts, each at its share of the target, and DP-SGD's sigma solved
    so that all of them composed spend at most ``target_epsilon`` at ``delta``.

    Args:
        sampling_rate, steps, clip_norm, trains: DP-SGD's public q, its steps, C and the
            networks it trains (first in the budget).
        counts: (covers, share of the target, L2 sensitivity) of each Gaussian count: its
            noise is the smallest whose epsilon alone is at most share * target.

    Raises:
        ValueError: a share that no noise reaches, or no sigma meeting the target.
    """
    gaussians = []
    for covers, share, sensitivity in counts:
        multiplier = accounting.histogram_noise_for(share * target_epsilon, delta,
                                                    adjacency=adjacency)
        gaussians.append(Mechanism.gaussian(covers, multiplier * sensitivity, sensitivity))
    sgd = accounting.noise_multiplier_for(
        target_epsilon, delta, sampling_rate, steps, ACCOUNTANT, adjacency=adjacency,
        extra_events=tuple(g.event() for g in gaussians))
    return Budget(target_epsilon, delta, adjacency,
                  (Mechanism.dp_sgd(trains, sgd, clip_norm), *gaussians))

