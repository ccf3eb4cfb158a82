"""Tabular autoencoder in backend-agnostic Keras 3, and a reproducible training loop.

Two architectures (``AutoencoderConfig.architecture``):

- ``tutorial``: ReLU on the input, Dense(3n/4), ReLU, Dense(n/2) bottleneck (the code, linear),
  ReLU, Dense(3n/4), ReLU, Dense(n, relu); one MSE over every output.
- ``kinds``: code = Dense(c)(x) + Dense(c)(Dense(h, relu)(x)) (a linear path beside a ReLU
  layer); the code is a run of blocks, one per source column (one dimension per numeric,
  ceil(log2 k) per k-category column: ``heads.block_sizes``, so that no group is starved), and
  the decoder reads column j from block j only (``heads.column_decoder``) through one head per
  column (linear + squared error for a numeric, softmax + cross-entropy for a category block),
  so no output can die and the code's axes follow the source columns.

Both: Adam, batch 256, up to 100 epochs, 30% validation rows, early stopping on validation loss
(patience 5, best weights restored; min_delta 1e-4 for the tutorial's, 1e-3 per column for
``kinds``: ``AutoencoderConfig.stopping_delta``). Plain and DP-SGD training run in the one loop
of the phase trainer (``models.training.phases``): plainly as one phase with early stopping,
under DP as the budget's steps with no validation rows.

Reproducibility without process-global seeding: every layer gets its own seeded initializer and
every epoch's row order comes from a ``numpy.random.Generator`` owned by the call, so several
models can train at once in threads and each still gives the same weights for the same seed.

This module imports neither Prefect, MLflow nor polars: it runs in a GPU worker, a Flower client
or a notebook alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from cloakflow.models.heads import NUMERIC, Head, as_heads, code_size, hidden_size, total_width
from cloakflow.models.registry import ModelFamily


@dataclass(frozen=True)
class AutoencoderConfig:
    """Architecture and training settings (defaults: the tutorial's).

    ``heads``: the output blocks, ``((family, width), ...)`` in column order, for the ``kinds``
    architecture (``models.heads``); without them every column is one numeric head.
    """

    architecture: str = "tutorial"  # or "kinds"
    heads: tuple = ()
    hidden_ratio: float = 0.75
    code_ratio: float = 0.5
    epochs: int = 100
    batch_size: int = 256
    learning_rate: float = 1e-3
    validation_fraction: float = 0.3
    validation: str = "random"  # or "tail": the last rows, as Keras's validation_split
    patience: int = 5
    min_delta: float | None = None  # None: 1e-4 (tutorial), 1e-3 nats per column (kinds)
    steps_per_execution: int = 32
    validation_batch_size: int = 4096
    max_attempts: int = 3
    max_init_draws: int = 200

    def sizes(self, n_inputs: int) -> tuple[int, int]:
        """Hidden and code widths for ``n_inputs`` columns (at least 1 each)."""
        if self.architecture == "kinds":
            heads = self.output_heads(n_inputs)
            return hidden_size(heads), code_size(heads)
        return max(int(self.hidden_ratio * n_inputs), 1), max(int(self.code_ratio * n_inputs), 1)

    def stopping_delta(self, n_inputs: int) -> float:
        """The smallest val_loss improvement that counts for early stopping: ``min_delta`` if
        given; else the tutorial's 1e-4 (its loss is the mean squared error over outputs), or
        for ``kinds`` 1e-3 per source column (its loss is summed over columns, in nats per
        row for a category): on the bank table that stops the whole-table model after about
        20 epochs instead of 60, with the same codes' ROC AUC (a code that starts lossless
        only needs its decoder learnt)."""
        if self.min_delta is not None:
            return self.min_delta
        if self.architecture == "kinds":
            return 1e-3 * len(self.output_heads(n_inputs))
        return 1e-4

    def output_heads(self, n_inputs: int) -> tuple[Head, ...]:
        """The output heads (``kinds``); one numeric head per column when none were given.

        Raises:
            ValueError: the heads do not cover ``n_inputs`` columns.
        """
        heads = as_heads(self.heads) or tuple(Head(NUMERIC, 1) for _ in range(n_inputs))
        if total_width(heads) != n_inputs:
            raise ValueError(f"output heads cover {total_width(heads)} columns, the input has "
                             f"{n_inputs}")
        return heads

    def to_dict(self) -> dict:
        return asdict(self)

    def training(self):
        """The loop settings as the trainer seam's ``TrainConfig``."""
        from cloakflow.models.training.trainer import TrainConfig

        return TrainConfig.of(self)


@dataclass
class TrainResult:
    """A trained autoencoder, its two halves, and what happened during training."""

    autoencoder: object
    encoder: object
    decoder: object
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0
    epochs_run: int = 0
    seconds: float = 0.0
    total_seconds: float = 0.0
    attempts: int = 1
    seed: int | None = 0  # None: a DP run, whose initialisation seed is secret
    dp: dict | None = None  # DP-SGD runs: the spent budget, clip norm and per-epoch clipping

    @property
    def best_val_loss(self) -> float | None:
        """None for DP-SGD runs: they hold out no validation rows and never stop early."""
        if not self.history.get("val_loss"):
            return None
        return self.history["val_loss"][self.best_epoch - 1]

    @property
    def seconds_per_epoch(self) -> float:
        """Mean seconds per epoch of the kept attempt (restarts excluded)."""
        return self.seconds / max(self.epochs_run, 1)


def build_autoencoder(n_inputs: int, config: AutoencoderConfig, seed: int):
    """Build (autoencoder, encoder, decoder) sharing weights.

    Args:
        n_inputs: number of input columns.
        config: widths and optimiser settings.
        seed: seeds each layer's kernel initializer (layer i gets ``seed + i``).
    """
    import keras
    from keras import layers

    from cloakflow.models.training.dp_sgd import mse_per_example

    if config.architecture == "kinds":
        return _build_kinds(n_inputs, config, seed)
    if config.architecture != "tutorial":
        raise ValueError(f"architecture must be 'tutorial' or 'kinds', not "
                         f"{config.architecture!r}")
    hidden, code = config.sizes(n_inputs)

    def dense(units: int, i: int, activation: str | None = None, name: str | None = None):
        return layers.Dense(units, activation=activation, name=name,
                            kernel_initializer=keras.initializers.GlorotUniform(seed=seed + i))

    inputs = keras.Input(shape=(n_inputs,), name="features")
    x = layers.Activation("relu")(inputs)
    x = dense(hidden, 0)(x)
    x = layers.Activation("relu")(x)
    codes = dense(code, 1, name="code")(x)
    encoder = keras.Model(inputs, codes, name="encoder")

    code_in = keras.Input(shape=(code,), name="code_in")
    y = layers.Activation("relu")(code_in)
    y = dense(hidden, 2)(y)
    y = layers.Activation("relu")(y)
    outputs = dense(n_inputs, 3, activation="relu", name="reconstruction")(y)
    decoder = keras.Model(code_in, outputs, name="decoder")

    autoencoder = keras.Model(inputs, decoder(encoder(inputs)), name="autoencoder")
    autoencoder.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss="mse",
        steps_per_execution=config.steps_per_execution,
    )
    autoencoder.per_example_loss = mse_per_example  # Keras's "mse", row by row
    return autoencoder, encoder, decoder


def _build_kinds(n_inputs: int, config: AutoencoderConfig, seed: int):
    """The ``kinds`` architecture: per-kind heads and losses (``models.heads``)."""
    import keras
    from keras import layers

    from cloakflow.models.heads import column_aligned_kernel, column_decoder, per_example_loss

    heads = config.output_heads(n_inputs)
    hidden, code = config.sizes(n_inputs)

    def dense(units: int, i: int, activation: str | None = None, name: str | None = None):
        return layers.Dense(units, activation=activation, name=name,
                            kernel_initializer=keras.initializers.GlorotUniform(seed=seed + i))

    # the encoder: a ReLU layer beside a linear path (a linear autoencoder, PCA-like, is
    # reachable from the first steps; the ReLU layer adds what is not linear); the decoder
    # reads each column from its own block of the code
    inputs = keras.Input(shape=(n_inputs,), name="features")
    linear = dense(code, 1, name="linear_path")
    nonlinear = layers.Dense(code, kernel_initializer="zeros", name="nonlinear_path")
    codes = layers.Add(name="code")([linear(inputs),
                                     nonlinear(dense(hidden, 0, "relu")(inputs))])
    linear.kernel.assign(column_aligned_kernel(heads))
    encoder = keras.Model(inputs, codes, name="encoder")
    code_in = keras.Input(shape=(code,), name="code_in")
    outputs = column_decoder(code_in, heads, seed)
    decoder = keras.Model(code_in, outputs, name="decoder")
    autoencoder = keras.Model(inputs, decoder(encoder(inputs)), name="autoencoder")
    loss = per_example_loss(heads)
    autoencoder.compile(optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
                        loss=loss, steps_per_execution=config.steps_per_execution)
    autoencoder.per_example_loss = loss  # the DP-SGD seam scores rows with it
    return autoencoder, encoder, decoder


def autoencoder_from_weights(n_inputs: int, config: AutoencoderConfig,
                             weights: list[np.ndarray]):
    """(autoencoder, encoder, decoder) rebuilt from plain data: the architecture from
    ``config`` and ``n_inputs``, the weights from ``weights`` (``get_weights()`` order). This
    is how a model crosses a task, process or machine boundary: as its config and weights.

    Raises:
        ValueError: the weights do not fit the architecture.
    """
    models = build_autoencoder(n_inputs, config, seed=0)
    models[0].set_weights(weights)
    return models

EpochCallback = Callable[[int, dict[str, float]], None]


def train_autoencoder(
    x: np.ndarray,
    config: AutoencoderConfig | None = None,
    seed: int = 42,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train an autoencoder on ``x`` with early stopping; reproducible for a given seed.

    With ReLU on every layer, a small model (a feature group of a few columns) can start with
    its output units dead: the loss never moves past the first epoch. Such a run is restarted
    from a derived seed (``seed + attempt * RESTART_STRIDE``), up to ``config.max_attempts``
    times, and the attempt with the lowest validation loss is kept. ``TrainResult.attempts``
    and ``TrainResult.seed`` say which one it was.

    Args:
        x: float32 matrix, rows are samples, already scaled to [0, 1].
        config: settings; the tutorial's by default.
        seed: drives layer initialisation, the validation split and each epoch's row order.
        on_epoch: called as ``on_epoch(epoch, {"loss": ..., "val_loss": ...})`` (1-based).

    Returns:
        The trained models with the best validation-loss weights restored.
    """
    config = config or AutoencoderConfig()
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need a 2-D matrix with at least 2 rows, got shape {x.shape}")
    best: TrainResult | None = None
    seconds = 0.0
    for attempt in range(config.max_attempts):
        result = _train_once(x, config, seed + attempt * RESTART_STRIDE, on_epoch)
        seconds += result.seconds
        if best is None or result.best_val_loss < best.best_val_loss:  # type: ignore[operator]
            best = result
        # restarts rescue the tutorial's dead ReLU outputs; kinds has none, and its
        # column-aligned start would repeat itself
        if config.architecture == "kinds" or result.best_epoch > 1 or result.epochs_run == 1:
            break
    best.attempts, best.total_seconds = attempt + 1, seconds
    return best


RESTART_STRIDE = 1_000_003


def _train_once(x: np.ndarray, config: AutoencoderConfig, seed: int,
                on_epoch: EpochCallback | None) -> TrainResult:
    rng = np.random.default_rng(seed)
    n_val = max(int(round(config.validation_fraction * len(x))), 1)
    if config.validation == "tail":  # the tutorial's validation_split: the last rows
        x_val, x_fit = x[-n_val:], x[:-n_val]
    elif config.validation == "random":
        order = rng.permutation(len(x))
        x_val, x_fit = x[order[:n_val]], x[order[n_val:]]
    else:
        raise ValueError(f"validation must be 'random' or 'tail', not {config.validation!r}")

    from cloakflow.models.training.phases import (
        EarlyStopping,
        Phase,
        PrivateTerm,
        train_phases,
    )

    autoencoder, encoder, decoder = _live_initialisation(x_fit, config, seed)
    # one phase of the phase trainer, plainly (C = inf, sigma = 0): each epoch's row order is
    # the next permutation of the run's generator (after the validation split's), early
    # stopping on the validation rows
    phase = Phase("reconstruct", ("autoencoder",),
                  private=(PrivateTerm("autoencoder", autoencoder.per_example_loss),))
    stopping = EarlyStopping(x_val, config.patience, config.stopping_delta(x.shape[1]),
                             config.validation_batch_size)
    log, _ = train_phases(
        {"autoencoder": autoencoder}, [phase], x_fit, config.training(),
        seed=rng, stopping=stopping,
        on_epoch=None if on_epoch is None else lambda e, m: on_epoch(
            e, {"loss": m["reconstruct.private"], "val_loss": m["validation"]}))
    history = {"loss": list(log.history["reconstruct.private"]),
               "val_loss": list(log.history["validation"])}
    return TrainResult(autoencoder, encoder, decoder, history=history,
                       best_epoch=log.best_epoch, epochs_run=log.epochs_run,
                       seconds=log.seconds, seed=seed)


def train_autoencoders_dp(
    x: np.ndarray,
    members: dict[str, list[int] | None],
    config: AutoencoderConfig,
    budget,
    clip_norm: float,
    rng: np.random.Generator | None = None,
    on_epoch: EpochCallback | None = None,
    heads: dict[str, tuple] | None = None,
) -> dict[str, TrainResult]:
    """Train several autoencoders on the rows of ``x`` with DP-SGD as ONE mechanism.

    Every model takes the same Poisson batch at each step; each row's gradient over all the
    models' parameters is clipped jointly to ``clip_norm`` and one Gaussian draw covers them
    all (``models.training.dp_sgd.DpSgd``), so together they spend exactly ``budget`` once.
    With one member this is plain DP-SGD for one model.

    Unlike ``train_autoencoder`` nothing here looks at the data except the noisy, clipped
    gradient steps the budget accounts for: no validation rows, no early stopping, no restarts
    (each would be another look at the data), and the initial draw is checked for live output
    units on uniform random inputs, not on training rows.

    Args:
        x: float32 matrix scaled to [0, 1] (with public bounds, for the guarantee to hold).
        members: model name -> the column indices of ``x`` it encodes (None: all columns).
        config: architecture, batch size (the expected Poisson batch) and learning rate.
        budget: ``models.training.dp_sgd.plan(...)``: sampling rate, steps and sigma.
        clip_norm: C, the bound on each row's gradient over all members' parameters.
        rng: tests only. Without it, initialisation, batch sampling and noise come from secret
            OS-entropy streams (``models.training.dp_sgd.secret_streams``) and the run is not
            reproducible, by design: a published seed must not let anyone replay it.
        on_epoch: called as ``on_epoch(epoch, {"loss": ..., "clipped": ...})``.
        heads: member name -> its output heads (``kinds`` architecture).

    Returns:
        name -> TrainResult; ``seed`` is None (secret) and ``dp`` holds the spent budget.
    """
    from cloakflow.models.training.dp_sgd import secret_streams
    from cloakflow.models.training.trainer import train

    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need a 2-D matrix with at least 2 rows, got shape {x.shape}")
    init_rng, train_rng = secret_streams(2, rng)
    built = {}
    for name, cols in members.items():
        width = x.shape[1] if cols is None else len(cols)
        public_sample = init_rng.random((1024, width), dtype=np.float32)
        seed = int(init_rng.integers(0, 2**30))
        member = replace(config, heads=tuple((heads or {}).get(name, config.heads)))
        built[name] = _live_initialisation(public_sample, member, seed)
    log = train([b[0] for b in built.values()], x, config.training(), budget=budget,
                clip_norm=clip_norm, columns=list(members.values()), rng=train_rng,
                on_epoch=on_epoch)
    dp = {**budget.to_dict(), "clip_norm": clip_norm, "steps_run": log.steps_run,
          "models_in_mechanism": list(members),
          "clipped_share_per_epoch": [round(c, 4) for c in log.clipped_share]}
    return {name: TrainResult(ae, enc, dec, history=dict(log.history),
                              best_epoch=log.epochs_run, epochs_run=log.epochs_run,
                              seconds=log.seconds, total_seconds=log.seconds, seed=None, dp=dp)
            for name, (ae, enc, dec) in built.items()}


def train_autoencoder_dp(
    x: np.ndarray,
    config: AutoencoderConfig,
    budget,
    clip_norm: float,
    rng: np.random.Generator | None = None,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """One autoencoder on every column of ``x`` with DP-SGD (``train_autoencoders_dp`` with a
    single member; same arguments)."""
    return train_autoencoders_dp(x, {"model": None}, config, budget, clip_norm, rng,
                                 on_epoch)["model"]


def _live_initialisation(x: np.ndarray, config: AutoencoderConfig, seed: int):
    """Build the model, redrawing initial weights until every output unit is active.

    With ReLU on the output, a unit whose pre-activation is negative on every row outputs 0 and
    gets no gradient: its column is never reconstructed, so the code never learns it. Such
    draws are rejected (derived seeds ``seed + k * RESTART_STRIDE + 1``); after
    ``config.max_init_draws`` draws the draw with the most live units is used.
    """
    if config.architecture == "kinds":  # linear and softmax heads: no output can die
        return build_autoencoder(x.shape[1], config, seed)
    sample = x[: min(len(x), 4096)]
    best, best_live = None, -1
    for draw in range(config.max_init_draws):
        models = build_autoencoder(x.shape[1], config, seed + draw * (RESTART_STRIDE + 1))
        live = int((np.asarray(models[0](sample)) > 0).any(axis=0).sum())
        if live > best_live:
            best, best_live = models, live
        if live == x.shape[1]:
            break
    return best


def encode(encoder, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """Latent codes of ``x``, computed in batches (bounded memory for large inputs)."""
    out = [np.asarray(encoder(np.ascontiguousarray(x[i:i + batch_size], dtype=np.float32)))
           for i in range(0, len(x), batch_size)]
    return np.concatenate(out, axis=0) if out else np.zeros((0, encoder.output_shape[-1]),
                                                            dtype=np.float32)


def reconstruct(autoencoder, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """Reconstructions of ``x``, in batches."""
    return encode(autoencoder, x, batch_size)


@dataclass(frozen=True)
class CodesSpec:
    """The codes autoencoders of one schema: per member (``whole``, then each feature group)
    its config (heads included), input width and the encoded columns it reads (None: all),
    and the loop settings (``trainer.TrainConfig``)."""

    configs: dict[str, AutoencoderConfig]
    widths: dict[str, int]
    columns: dict[str, list[int] | None]
    loop: object


class CodesFamily(ModelFamily):
    """The codes autoencoders as a registered model (``models.registry``): the whole-table
    model and one per feature group, trained in one phase whose private terms are each
    member's per-row reconstruction loss on its own columns (one DP mechanism under DP: the
    same batches, joint clipping). Feeds codes releases."""

    name = "codes"
    description = ("the codes autoencoders: one over the whole table and one per feature "
                   "group")
    release = "codes"
    command = "cloakflow run"
    encodes = True

    def spec(self, pre, loop, architecture: str = "kinds") -> CodesSpec:
        """``architecture`` autoencoders over a fitted preprocessor's columns, with ``loop``'s
        epochs, batch and rate (``kinds``: one head per source column, from the schema)."""
        columns = {"whole": None, **pre.group_slices()}
        base = AutoencoderConfig(architecture=architecture, batch_size=loop.batch_size,
                                 learning_rate=loop.learning_rate, epochs=loop.epochs)
        heads = {"whole": pre.heads(), **{g: pre.heads(g) for g in pre.profile.groups}} \
            if architecture == "kinds" else {}
        total = len(pre.output_columns)
        return CodesSpec({n: replace(base, heads=tuple(heads.get(n, ()))) for n in columns},
                         {n: total if c is None else len(c) for n, c in columns.items()},
                         columns, loop)

    def member_names(self, profile) -> list[str]:
        return ["whole", *profile.groups]

    def networks(self, spec: CodesSpec, seed: int) -> dict:
        return {n: build_autoencoder(spec.widths[n], cfg, seed + i)[0]
                for i, (n, cfg) in enumerate(spec.configs.items())}

    def phases(self, spec: CodesSpec, networks: dict) -> list:
        from cloakflow.models.training.dp_sgd import model_loss
        from cloakflow.models.training.phases import Phase, PrivateTerm

        def cols(c):
            return None if c is None else tuple(int(i) for i in c)

        return [Phase("reconstruct", tuple(networks), private=tuple(
            PrivateTerm(n, model_loss(m), cols(spec.columns[n])) for n, m in networks.items()))]

    def get_weights(self, networks: dict) -> dict[str, list[np.ndarray]]:
        return {n: m.get_weights() for n, m in networks.items()}

    def set_weights(self, networks: dict, weights: dict[str, list[np.ndarray]]) -> None:
        for n, m in networks.items():
            if n not in weights:
                raise ValueError(f"codes: no weights for model {n!r}; got {sorted(weights)}")
            m.set_weights(weights[n])


CODES = CodesFamily()
