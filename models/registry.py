"""The model registry: every model family cloakflow trains, by name, and the one way to train
one (:func:`fit`).

A **model family** (:class:`ModelFamily`) declares what a model is, not how a loop runs:

- its **spec** (``spec(pre, loop, **options)``): plain, picklable data fixing the architecture
  for a fitted ``TablePreprocessor`` (the shared schema in a federation) and the loop settings
  (``trainer.TrainConfig``);
- its **networks** (``networks(spec, seed)``: name -> functional Keras model) and their
  weights as NumPy arrays (``get_weights`` / ``set_weights``: what crosses a task, process or
  machine boundary, never a live Keras object);
- its **training phases** (``phases(spec, networks)``: ``models.training.phases.Phase``), each
  naming the networks it updates, its private per-example term on real rows and its public
  term, and the matrix they read (``inputs(spec, x)``);
- what it models and counts (``models_target``, ``counts``), the release kind its weights
  feed (``release``) and its members' names (``member_names``).

:func:`fit` trains any family in the phase trainer's one loop, plainly or with DP-SGD (the
accountant counts exactly the steps of phases with a private term), and FedProx's proximal
term is added as a public term. Central training wrappers (early stopping and restarts of the
codes autoencoder, the VAE's sampler) sit on the same loop.

Adding a model is one module with its family plus one line in ``_FAMILIES`` (or
:func:`register`, as the tests' two-network GAN does).

This module imports neither Prefect, MLflow nor polars.
"""

from __future__ import annotations

import importlib
from dataclasses import replace

import numpy as np

# name -> "module:attribute" of its family (imported on first use: TensorFlow stays unloaded
# until a model is really needed)
_FAMILIES: dict[str, str] = {
    "codes": "cloakflow.models.autoencoder:CODES",
    "vae": "cloakflow.models.vae:VAE",
    "gan": "cloakflow.models.gan:GAN",
    "privatizer": "cloakflow.models.privatizer:PRIVATIZER",
    "imputer": "cloakflow.models.imputer:IMPUTER",
}
_LOADED: dict[str, ModelFamily] = {}


class ModelFamily:
    """What a model declares (subclass it; see the module docstring).

    Attributes:
        name: the registry key (``--model`` on the command line, ``model`` in a federation's
            settings and manifests).
        description: one line for help texts.
        models_target: whether the target column is one of its modelled columns (it then
            needs public bounds in a federation).
        counted: what its DP count in a federation counts (``counts``).
        release: the release kind its trained weights feed.
        command: the command that publishes that release (from weights trained elsewhere
            with ``--models-from``).
        encodes: whether it encodes rows into codes (a federation's holders can then return
            their codes).
        federates: whether ``cloakflow federate`` can train it across holders.
    """

    name: str = ""
    description: str = ""
    models_target: bool = False
    counted: str = "row count"
    release: str = ""
    command: str = ""
    encodes: bool = False
    federates: bool = True

    def preprocessor_options(self) -> dict:
        """Extra ``TablePreprocessor`` options the family needs (default none)."""
        return {}

    def spec(self, pre, loop, **options):
        """The architecture for a fitted preprocessor and the loop settings ``loop``."""
        raise NotImplementedError

    def member_names(self, profile) -> list[str]:
        """The names of its networks' weight sets in a manifest, from the profile alone."""
        raise NotImplementedError

    def networks(self, spec, seed: int) -> dict:
        """name -> functional Keras model, initialised from ``seed``."""
        raise NotImplementedError

    def phases(self, spec, networks: dict) -> list:
        """The training phases over ``networks``."""
        raise NotImplementedError

    def inputs(self, spec, x: np.ndarray) -> np.ndarray:
        """The matrix the phases read, from the preprocessed rows ``x`` (default ``x``)."""
        return x

    def loop(self, spec):
        """The loop settings (``trainer.TrainConfig``) of a spec."""
        return spec.loop

    def counts(self, spec, pre, x: np.ndarray) -> np.ndarray:
        """What its DP count counts in ``x`` (default: the rows), float64."""
        return np.array([len(x)], dtype=np.float64)

    def get_weights(self, networks: dict) -> dict[str, list[np.ndarray]]:
        """Each network's trainable values as float32 arrays (``trainable_variables``)."""
        return {n: [np.array(v.value, dtype=np.float32) for v in m.trainable_variables]
                for n, m in networks.items()}

    def set_weights(self, networks: dict, weights: dict[str, list[np.ndarray]]) -> None:
        """Assign ``get_weights``-shaped arrays.

        Raises:
            ValueError: a network missing or a different number of arrays (another schema or
                architecture).
        """
        for n, m in networks.items():
            if n not in weights:
                raise ValueError(f"{self.name}: no weights for network {n!r}; got "
                                 f"{sorted(weights)}")
            variables = m.trainable_variables
            if len(variables) != len(weights[n]):
                raise ValueError(f"{self.name}: {len(weights[n])} arrays for {n!r}'s "
                                 f"{len(variables)} parameters: the weights were built for "
                                 "another schema or architecture")
            for v, a in zip(variables, weights[n], strict=True):
                v.assign(np.asarray(a, dtype=np.float32))

    def initial_weights(self, spec, seed: int) -> dict[str, list[np.ndarray]]:
        """The networks' starting weights from a public seed (no rows involved)."""
        return self.get_weights(self.networks(spec, seed))


def names() -> tuple[str, ...]:
    """The registered families' names."""
    return tuple(_FAMILIES) + tuple(n for n in _LOADED if n not in _FAMILIES)


def get(name: str) -> ModelFamily:
    """The family registered as ``name``.

    Raises:
        ValueError: an unknown name (the message lists the registered ones).
    """
    if name in _LOADED:
        return _LOADED[name]
    if name not in _FAMILIES:
        raise ValueError(f"unknown model {name!r}; choose one of {list(names())}")
    module, _, attribute = _FAMILIES[name].partition(":")
    family = getattr(importlib.import_module(module), attribute)
    _LOADED[name] = family
    return family


def register(family: ModelFamily) -> ModelFamily:
    """Add a family under ``family.name`` (tests and extensions); returns it.

    Raises:
        ValueError: no name, or a name already registered to another family.
    """
    if not family.name:
        raise ValueError("a model family needs a name")
    known = _LOADED.get(family.name)
    if (family.name in _FAMILIES and family.name not in _LOADED) or (
            known is not None and known is not family):
        raise ValueError(f"model {family.name!r} is registered already")
    _LOADED[family.name] = family
    return family


def unregister(name: str) -> None:
    """Remove a family added by :func:`register` (tests)."""
    if name in _FAMILIES:
        raise ValueError(f"model {name!r} is built in")
    _LOADED.pop(name, None)


def fit(family: ModelFamily, spec, x: np.ndarray, weights: dict | None = None, *,
        seed: int = 0, budget=None, clip_norm: float | None = None,
        rng: np.random.Generator | None = None, expected_batch: float | None = None,
        proximal_mu: float = 0.0, on_epoch=None, stopping=None):
    """Train a family's networks on the preprocessed rows ``x`` in the phase trainer
    (``phases.train_phases``), plainly or with DP-SGD.

    Args:
        family, spec: the model and its architecture.
        x: float32 matrix (rows, encoded columns); the phases read ``family.inputs(spec, x)``.
        weights: starting weights (``get_weights`` shape); None: initialised from ``seed``.
        seed: the networks' initialisation (without ``weights``) and, in plain runs, the
            published seed of the row order.
        budget, clip_norm, rng, expected_batch: DP-SGD, as ``phases.train_phases``.
        proximal_mu: FedProx (Li et al. 2020): mu/2 ||w - w_0||^2 over every network, w_0 the
            starting weights, as a public term of each phase (it reads no row).
        on_epoch, stopping: as ``phases.train_phases`` (early stopping: plain runs only).

    Returns:
        (the trained weights, ``get_weights`` shape; the ``phases.PhaseLog``).

    Raises:
        ValueError: weights of another architecture, FedProx on a phase that has a public
            term of its own, or what ``train_phases`` refuses.
    """
    from cloakflow.models.training.phases import train_phases
    from cloakflow.models.training.trainer import proximal_term

    networks = family.networks(spec, seed)
    if weights is not None:
        family.set_weights(networks, weights)
    phases = family.phases(spec, networks)
    if proximal_mu:
        if proximal_mu < 0:
            raise ValueError(f"the proximal mu must be >= 0, got {proximal_mu}")
        if any(p.public is not None for p in phases):
            raise ValueError(f"{family.name}: FedProx adds its proximal term as a phase's "
                             "public term, and this model's phases have their own")
        names_ = list(networks)
        term = proximal_term([networks[n] for n in names_], names_, proximal_mu)
        phases = [replace(p, public=term) for p in phases]
    log, _ = train_phases(networks, phases, family.inputs(spec, x), family.loop(spec),
                          budget=budget, clip_norm=clip_norm, seed=seed, rng=rng,
                          expected_batch=expected_batch, on_epoch=on_epoch, stopping=stopping)
    return family.get_weights(networks), log
