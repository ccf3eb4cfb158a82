"""Tabular variational autoencoder (Kingma & Welling 2014, "Auto-Encoding Variational Bayes"),
conditional on one categorical column (Sohn et al. 2015, CVAE), in backend-agnostic Keras 3.

The model works on the preprocessed matrix of ``tasks.data.preprocess.TablePreprocessor``: a run
of blocks, one per source column (``models.heads``): a numeric-family column is one number in
[0, 1] (quantile-scaled, i.e. its CDF value), a categorical or boolean column a one-hot block.

- **Numeric columns** are modelled as normal scores: the VAE sees probit(u) (u the CDF value, so
  a skewed, heavy-tailed or multi-modal column arrives as a standard normal), and its decoder
  gives each one a mean and a log standard deviation, scored by the Gaussian negative
  log-likelihood. Sampling draws from that normal and maps it back through the normal CDF, so the
  marginal is matched through the quantile knots, outliers included.
- **Categorical and boolean columns** get a softmax head scored by cross-entropy; sampling draws
  the category from the softmax (not its argmax, which would erase rare levels).
- **Condition**: one categorical block (the target, or any profile column) is given to the
  decoder as well as the encoder, and left out of the reconstruction loss, so rows can be asked
  for with a chosen label and the class balance is whatever distribution the caller samples the
  condition from.
- **ELBO** per row: sum over columns of the reconstruction negative log-likelihood plus
  ``beta`` times KL(q(z|x) || N(0, I)) (closed form for diagonal Gaussians). Training minimises
  its mean over rows.

Training goes through the one trainer seam (``models.training.trainer.train``), plainly or with
DP-SGD: every trainable layer is a Dense layer (ghost-norm clipping) and the reparameterisation
draws its noise from a ``keras.random.SeedGenerator`` that the DP trainer reseeds from secret
entropy. Sampling from a trained model is seeded (``numpy.random.Generator``).

This module imports neither Prefect, MLflow nor polars.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from cloakflow.models.heads import NUMERIC, Head, as_heads, check_condition, starts, total_width
from cloakflow.models.registry import ModelFamily

PROBIT_CLIP = 1e-4  # CDF values are clipped to [c, 1 - c] before the probit (|score| <= 3.72)
MIN_LOG_SIGMA = -7.0  # a numeric head's log standard deviation is kept above this


@dataclass(frozen=True)
class VaeConfig:
    """Architecture and loop settings.

    ``heads``: the output blocks of every column of the matrix, ``((family, width), ...)`` in
    column order (``TablePreprocessor.heads()``). ``condition``: index into ``heads`` of the
    categorical block the model is conditioned on, or None. ``latent``: width of z (0: the rule
    ``latent_size``). ``hidden``: widths of the encoder's Dense layers (the decoder mirrors them).
    """

    heads: tuple = ()
    condition: int | None = None
    latent: int = 0
    hidden: tuple[int, ...] = (128, 128)
    beta: float = 1.0
    epochs: int = 100
    batch_size: int = 256
    learning_rate: float = 1e-3
    steps_per_execution: int = 32

    def __post_init__(self):
        heads = as_heads(self.heads)
        check_condition(heads, self.condition, "VAE")
        if not self.hidden or min(self.hidden) < 1 or self.latent < 0 or self.beta <= 0:
            raise ValueError("hidden widths and beta must be positive, latent >= 0")

    @property
    def output_heads(self) -> tuple[Head, ...]:
        return as_heads(self.heads)

    @property
    def latent_size(self) -> int:
        """``latent``, or by rule one dimension per column of the matrix (the condition
        included), between 8 and 64."""
        if self.latent:
            return self.latent
        return int(min(64, max(8, len(self.output_heads))))

    def to_dict(self) -> dict:
        return asdict(self)

    def training(self):
        """The loop settings as the trainer seam's ``TrainConfig``."""
        from cloakflow.models.training.trainer import TrainConfig

        return TrainConfig.of(self)


@dataclass(frozen=True)
class _Layout:
    """Where each column sits in the input matrix and in the decoder's output."""

    starts: tuple[int, ...]  # input start of each column's block
    outputs: tuple[tuple[int, int], ...]  # decoder output (start, stop) per modelled column
    modelled: tuple[int, ...]  # column indices the decoder reconstructs (all but condition)
    width: int  # input width
    out_width: int  # decoder output width (numerics 2: mean and log sigma)


@functools.cache
def _layout(heads: tuple[Head, ...], condition: int | None) -> _Layout:
    outputs, o, modelled = [], 0, []
    for i, h in enumerate(heads):
        if i == condition:
            continue
        size = 2 if h.family == NUMERIC else h.width
        outputs.append((o, o + size))
        modelled.append(i)
        o += size
    return _Layout(tuple(starts(heads)), tuple(outputs), tuple(modelled), total_width(heads), o)


def to_model_space(x: np.ndarray, heads: Sequence[Head]) -> np.ndarray:
    """The VAE's input: ``x`` with every numeric column's CDF value u replaced by its normal
    score probit(clip(u, c, 1 - c)) (c = ``PROBIT_CLIP``). Shape kept, float32."""
    from scipy.special import ndtri

    heads = as_heads(heads)
    out = np.array(x, dtype=np.float32, copy=True)
    for h, s in zip(heads, _layout(heads, None).starts, strict=True):
        if h.family == NUMERIC:
            out[:, s] = ndtri(np.clip(out[:, s], PROBIT_CLIP, 1 - PROBIT_CLIP))
    return out


def _sampling_layer():
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="cloakflow")
    class Reparameterise(keras.layers.Layer):
        """z = mu + exp(logvar / 2) * eps, eps ~ N(0, I) from the layer's seed generator (the
        reparameterisation trick; under DP-SGD the generator's state is drawn from secret
        entropy by the trainer)."""

        def __init__(self, seed: int = 0, **kwargs):
            super().__init__(**kwargs)
            self.seed = int(seed)
            self.seed_generator = keras.random.SeedGenerator(self.seed)

        def call(self, inputs):
            mu, logvar = inputs
            eps = keras.random.normal(ops.shape(mu), seed=self.seed_generator)
            return mu + ops.exp(0.5 * logvar) * eps

        def get_config(self):
            return {**super().get_config(), "seed": self.seed}

    return Reparameterise


@functools.cache
def custom_layers() -> dict:
    """The Keras layers of the VAE, registered for loading saved models."""
    from cloakflow.models.heads import custom_layers as head_layers

    return {**head_layers(), "Reparameterise": _sampling_layer()}


@dataclass
class Vae:
    """A built VAE: ``model`` (x -> [decoder outputs, mu, logvar], what training sees),
    ``encoder`` (x -> [mu, logvar]) and ``decoder`` ([z, condition] or z -> outputs)."""

    config: VaeConfig
    model: object
    encoder: object
    decoder: object

    def per_example_loss(self):
        """``loss(y, outputs) -> (batch,)``: the negative ELBO of each row (``y`` in model space,
        ``outputs`` the model's concatenated [decoder outputs, mu, logvar])."""
        return elbo_loss(self.config)

    def sample(self, rows: int, rng: np.random.Generator,
               condition: np.ndarray | None = None) -> np.ndarray:
        """Draw ``rows`` synthetic rows in the preprocessor's space (numerics as CDF values in
        [0, 1], categories one-hot), seeded by ``rng``.

        Args:
            rows: how many rows.
            rng: the seed of every draw (latent, numeric noise, categories).
            condition: with a conditional model, the category index of each row, shape (rows,)
                (e.g. drawn from a public or DP label distribution, or one value repeated).

        Raises:
            ValueError: a conditional model without ``condition``, or indices out of range.
        """
        from scipy.special import ndtr

        cfg = self.config
        heads = cfg.output_heads
        lay = _layout(heads, cfg.condition)
        z = rng.standard_normal((rows, cfg.latent_size)).astype(np.float32)
        inputs = [z]
        if cfg.condition is not None:
            if condition is None:
                raise ValueError("a conditional VAE needs the condition of every row")
            condition = np.asarray(condition, dtype=np.int64).reshape(-1)
            k = heads[cfg.condition].width
            if len(condition) != rows or condition.min(initial=0) < 0 or \
                    condition.max(initial=0) >= k:
                raise ValueError(f"condition must be {rows} indices in [0, {k})")
            inputs.append(np.eye(k, dtype=np.float32)[condition])
        out = _batched(self.decoder, inputs)
        matrix = np.zeros((rows, lay.width), dtype=np.float32)
        for col, (a, b) in zip(lay.modelled, lay.outputs, strict=True):
            h, s = heads[col], lay.starts[col]
            if h.family == NUMERIC:
                mean = out[:, a]
                sigma = np.exp(np.maximum(out[:, a + 1], MIN_LOG_SIGMA))
                score = mean + sigma * rng.standard_normal(rows)
                matrix[:, s] = np.clip(ndtr(score), 0.0, 1.0)
            else:
                p = np.clip(out[:, a:b].astype(np.float64), 0.0, None)
                p /= p.sum(axis=1, keepdims=True)
                picked = (p.cumsum(axis=1) > rng.random((rows, 1))).argmax(axis=1)
                matrix[np.arange(rows), s + picked] = 1.0
        if cfg.condition is not None:
            s = lay.starts[cfg.condition]
            matrix[np.arange(rows), s + condition] = 1.0
        return matrix


def _batched(model, inputs: list, batch: int = 8192) -> np.ndarray:
    n = len(inputs[0])
    parts = []
    for i in range(0, n, batch):
        chunk = [np.ascontiguousarray(a[i:i + batch]) for a in inputs]
        parts.append(np.asarray(model(chunk if len(chunk) > 1 else chunk[0])))
    return np.concatenate(parts, axis=0)


def build_vae(config: VaeConfig, seed: int) -> Vae:
    """Build the VAE for ``config`` with seeded initializers (layer i gets ``seed + i``).

    Encoder: x -> Dense(h1, relu) -> ... -> Dense(latent) twice (mu, logvar). Decoder:
    [z, condition one-hot] -> Dense(h_k, relu) -> ... -> one head per modelled column (a
    numeric: 2 linear units, mean and log sigma of its normal score; a category block: a
    softmax). ``model`` outputs the concatenation [decoder outputs, mu, logvar], shape
    (batch, out_width + 2 * latent).
    """
    import keras
    from keras import layers

    from cloakflow.models.heads import custom_layers as head_layers

    cfg = config
    heads = cfg.output_heads
    lay = _layout(heads, cfg.condition)
    latent = cfg.latent_size
    counter = iter(range(10_000))

    def dense(units: int, activation: str | None = None, name: str | None = None):
        return layers.Dense(units, activation=activation, name=name,
                            kernel_initializer=keras.initializers.GlorotUniform(
                                seed=seed + next(counter)))

    x_in = keras.Input(shape=(lay.width,), name="row")
    h = x_in
    for i, units in enumerate(cfg.hidden):
        h = dense(units, "relu", f"encoder_{i}")(h)
    mu = dense(latent, name="mu")(h)
    logvar = dense(latent, name="logvar")(h)
    encoder = keras.Model(x_in, [mu, logvar], name="vae_encoder")

    z_in = keras.Input(shape=(latent,), name="z")
    dec_inputs = [z_in]
    d = z_in
    if cfg.condition is not None:
        c_in = keras.Input(shape=(heads[cfg.condition].width,), name="condition")
        dec_inputs.append(c_in)
        d = layers.Concatenate(name="z_and_condition")([z_in, c_in])
    for i, units in enumerate(reversed(cfg.hidden)):
        d = dense(units, "relu", f"decoder_{i}")(d)
    parts = []
    for col in lay.modelled:
        hd = heads[col]
        if hd.family == NUMERIC:
            parts.append(dense(2, name=f"head_{col}_normal")(d))
        else:
            parts.append(dense(hd.width, "softmax", f"head_{col}_categorical")(d))
    out = parts[0] if len(parts) == 1 else layers.Concatenate(name="outputs")(parts)
    decoder = keras.Model(dec_inputs if len(dec_inputs) > 1 else z_in, out, name="vae_decoder")

    enc_mu, enc_logvar = encoder(x_in)
    z = custom_layers()["Reparameterise"](seed + 9973, name="reparameterise")(
        [enc_mu, enc_logvar])
    if cfg.condition is not None:
        start = lay.starts[cfg.condition]
        cond = head_layers()["CodeBlock"](start, start + heads[cfg.condition].width,
                                          name="condition_block")(x_in)
        decoded = decoder([z, cond])
    else:
        decoded = decoder(z)
    model = keras.Model(x_in, layers.Concatenate(name="decoded_and_posterior")(
        [decoded, enc_mu, enc_logvar]), name="vae")
    vae = Vae(cfg, model, encoder, decoder)
    model.per_example_loss = vae.per_example_loss()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=cfg.learning_rate))
    return vae


def elbo_loss(config: VaeConfig):
    """``loss(y, outputs) -> (batch,)``: the negative ELBO per row, in nats.

    ``y``: the row in model space (``to_model_space``), shape (batch, width); ``outputs``: the
    model's [decoder outputs, mu, logvar], shape (batch, out_width + 2 * latent). Numeric
    columns: Gaussian NLL 0.5 ((y - m) / s)^2 + log s + 0.5 log 2 pi; category blocks:
    cross-entropy; plus ``beta`` * KL(N(mu, exp(logvar)) || N(0, I)). The condition block is
    not scored."""
    from keras import ops

    heads = config.output_heads
    lay = _layout(heads, config.condition)
    latent = config.latent_size
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    eps = 1e-7

    def loss(y, outputs):
        total = 0.0
        for col, (a, b) in zip(lay.modelled, lay.outputs, strict=True):
            h, s = heads[col], lay.starts[col]
            if h.family == NUMERIC:
                mean = outputs[:, a]
                log_sigma = ops.maximum(outputs[:, a + 1], MIN_LOG_SIGMA)
                z = (y[:, s] - mean) * ops.exp(-log_sigma)
                total = total + 0.5 * ops.square(z) + log_sigma + half_log_2pi
            else:
                p = ops.clip(outputs[:, a:b], eps, 1.0)
                total = total - ops.sum(y[:, s:s + h.width] * ops.log(p), axis=-1)
        mu = outputs[:, lay.out_width:lay.out_width + latent]
        logvar = outputs[:, lay.out_width + latent:]
        kl = 0.5 * ops.sum(ops.exp(logvar) + ops.square(mu) - 1.0 - logvar, axis=-1)
        return total + config.beta * kl

    return loss


@dataclass
class VaeResult:
    """A trained VAE and what its training did (``log``: the trainer seam's ``TrainLog``;
    ``seed`` None for a DP run, whose initialisation and noise are secret)."""

    vae: Vae
    log: object
    seed: int | None

    @property
    def history(self) -> dict[str, list[float]]:
        return dict(self.log.history)

    @property
    def synthesizer(self) -> Vae:
        """What samples rows (``sample(rows, rng, condition)``): the VAE."""
        return self.vae

    def portable(self) -> VaeWeights:
        """What crosses a task or process boundary: configuration, weights and log."""
        return VaeWeights(self.vae.config, [np.asarray(w) for w in self.vae.model.get_weights()],
                          self.log, self.seed)


@dataclass
class VaeWeights:
    """A trained VAE without a Keras object: its configuration, its weights (NumPy arrays in
    ``model.get_weights()`` order), its training log and seed; ``result()`` rebuilds it
    (``build_vae`` + ``set_weights``: the same decoder, so the same samples)."""

    config: VaeConfig
    weights: list
    log: object
    seed: int | None

    def result(self) -> VaeResult:
        vae = build_vae(self.config, 0)
        vae.model.set_weights(self.weights)
        return VaeResult(vae, self.log, self.seed)


def train_vae(x: np.ndarray, config: VaeConfig, seed: int = 0, *, budget=None,
              clip_norm: float | None = None, rng: np.random.Generator | None = None,
              on_epoch=None, expected_batch: float | None = None) -> VaeResult:
    """Train a VAE on the preprocessed rows ``x`` through the trainer seam.

    Plain (``budget`` None): ``config.epochs`` epochs of shuffled minibatches, row order and
    initialisation from ``seed``; no validation rows and no early stopping (the loop is the
    same as under DP, so the two compare). With a budget (``dp_sgd.plan``): DP-SGD for exactly
    its steps, the initialisation, batches, noise and the reparameterisation noise drawn from
    secret OS-entropy streams (``rng``: tests only), and ``seed`` unused.

    Args:
        x: float32 (rows, width) in the preprocessor's space: numerics as CDF values in [0, 1],
            categories one-hot (``TablePreprocessor(numeric="quantile")``).
        config: the heads of ``x``'s columns, the condition, sizes and loop settings.
        budget, clip_norm: DP-SGD's plan and the per-row gradient bound C.
        on_epoch: ``on_epoch(epoch, {"loss": ..., "clipped": ...})``, loss = mean negative
            ELBO per row (nats).
        expected_batch: DP with a private row count: the public divisor of the noisy gradient
            sum (``dp_sgd.train_dp``; default q * n).

    Raises:
        ValueError: ``x`` does not match the heads' width, or is not a 2-D matrix with rows.
    """
    from cloakflow.models.training.trainer import train

    x = np.ascontiguousarray(x, dtype=np.float32)
    lay = _layout(config.output_heads, config.condition)
    if x.ndim != 2 or len(x) < 2 or x.shape[1] != lay.width:
        raise ValueError(f"need a (rows >= 2, {lay.width}) matrix for these heads, got "
                         f"shape {x.shape}")
    xm = to_model_space(x, config.output_heads)
    if budget is None:
        vae = build_vae(config, seed)
        log = train(vae.model, xm, config.training(), loss_fn=vae.per_example_loss(),
                    seed=seed, on_epoch=on_epoch)
        return VaeResult(vae, log, seed)
    from cloakflow.models.training.dp_sgd import secret_streams

    init_rng, train_rng = secret_streams(2, rng)
    vae = build_vae(config, int(init_rng.integers(0, 2**30)))
    log = train(vae.model, xm, config.training(), budget=budget, clip_norm=clip_norm,
                loss_fn=vae.per_example_loss(), rng=train_rng, on_epoch=on_epoch,
                expected_batch=expected_batch)
    return VaeResult(vae, log, None)


class VaeFamily(ModelFamily):
    """The conditional tabular VAE as a registered model (``models.registry``): one network
    ``vae`` trained in one phase whose private term is each row's negative ELBO, reading the
    rows in model space (``to_model_space``). The target is a modelled column; its DP count
    in a federation is the condition's histogram. Feeds synthetic releases."""

    name = "vae"
    description = "a conditional tabular VAE (Kingma and Welling 2014) over the whole row"
    models_target = True
    counted = "condition histogram"
    release = "synthetic"
    command = "cloakflow synthesize"

    def preprocessor_options(self) -> dict:
        from cloakflow.tasks.data.preprocess import DISCRETE_LEVELS

        return {"with_target": True, "missing_state": True, "discrete_levels": DISCRETE_LEVELS}

    def spec(self, pre, loop, latent: int = 0) -> VaeConfig:
        """The ``VaeConfig`` over a fitted preprocessor's heads, conditioned on the target as
        ``cloakflow synthesize`` is by default, with ``loop``'s epochs, batch and rate."""
        from cloakflow.tasks.release.synthetic import parse_condition

        cond = parse_condition(None, pre, "<shared schema>")
        return VaeConfig(heads=pre.heads(), condition=cond.index, latent=int(latent or 0),
                         epochs=loop.epochs, batch_size=loop.batch_size,
                         learning_rate=loop.learning_rate)

    def member_names(self, profile) -> list[str]:
        return ["vae"]

    def networks(self, spec: VaeConfig, seed: int) -> dict:
        return {"vae": build_vae(spec, seed).model}

    def phases(self, spec: VaeConfig, networks: dict) -> list:
        from cloakflow.models.training.phases import Phase, PrivateTerm

        return [Phase("elbo", ("vae",), private=(PrivateTerm("vae", elbo_loss(spec)),))]

    def inputs(self, spec: VaeConfig, x: np.ndarray) -> np.ndarray:
        return to_model_space(x, spec.output_heads)

    def loop(self, spec: VaeConfig):
        return spec.training()

    def counts(self, spec: VaeConfig, pre, x: np.ndarray) -> np.ndarray:
        _, start, stop = pre.column_blocks()[spec.condition]
        return x[:, start:stop].sum(axis=0).astype(np.float64)


VAE = VaeFamily()
