"""Conditional tabular GAN (Goodfellow et al. 2014, "Generative Adversarial Nets"; in the
family of CTGAN, Xu et al. 2019, "Modeling Tabular Data using Conditional GAN"), in
backend-agnostic Keras 3, trained as two phases of the one phase trainer.

It works on the preprocessed matrix of ``tasks.data.preprocess.TablePreprocessor`` as the VAE
does (``models.vae``): one block per source column, a numeric-family column one CDF value u in
[0, 1], a categorical or boolean column a one-hot block.

- **Model space** is the VAE's (``vae.to_model_space``): a numeric column as its normal score
  probit(u), so a skewed or multi-modal column reaches both networks as a standard normal (the
  role CTGAN's mode-specific normalisation plays), a category as its one-hot block.
- **Generator** ``G([z, c, g])``: latent noise z ~ N(0, I), the condition's one-hot c and Gumbel
  noise g -> residual blocks as CTGAN's (each Dense -> normalisation -> ReLU, concatenated with
  its input; layer normalisation, which reads one row, where CTGAN has batch normalisation)
  -> one linear unit per numeric column (its normal score) and,
  per category block, a straight-through Gumbel-softmax sample (Jang et al. 2017): the forward
  value is the exact one-hot of argmax(logits + g), the gradient that of
  softmax((logits + g) / tau). The critic therefore never tells real from generated rows by
  one-hots that are not exactly 0/1. The condition block is copied from c.
- **Critic** ``D``: ``pac`` rows side by side -> Dense(LeakyReLU 0.2) layers -> one score
  (PacGAN, Lin et al. 2018: a critic that sees several rows at once penalises a generator
  whose rows lack diversity, the usual guard against mode collapse).
- **Objective**: the logistic GAN loss with the non-saturating generator loss. The critic's
  loss on a real pack, softplus(-D(x)), is its **private** term (per pack, on real rows
  only); its loss on generated packs, softplus(D(G(z))), and the generator's loss,
  softplus(-D(G(z))), read no real row and are **public** terms. No term mixes real and
  generated rows (no gradient penalty on interpolates), so under DP-SGD every real-row
  gradient is inside the clipped private term (``models.training.phases``).
- **Conditioning**: one categorical block (the target by default) is drawn for every
  generated row from given shares (the training rows' own, or a DP histogram) and copied into
  its block; the critic judges rows with their condition, and optionally (``classifier`` >
  0) an auxiliary classifier (AC-GAN, Odena et al. 2017) learns the condition from the rest
  of a real row (a private term of the
  critic's phase, on the first row of each pack) while the generator is charged its
  cross-entropy on generated rows (public), so generated rows carry the condition's signal.

**Under DP** (``pac`` must be 1): each Poisson-sampled real row is one pack, clipped to C, so
one row changes the noisy gradient sum by at most C (add/remove adjacency) and the accountant
counts the critic's steps only; the generator is trained on the critic's outputs alone and is
DP by post-processing. The condition shares must then come from a DP count.

This module imports neither Prefect, MLflow nor polars.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from cloakflow.models.heads import NUMERIC, Head, as_heads, check_condition, starts, total_width
from cloakflow.models.registry import ModelFamily
from cloakflow.models.vae import to_model_space

LEAK = 0.2  # the critic's LeakyReLU slope


@dataclass(frozen=True)
class GanConfig:
    """Architecture and loop settings.

    ``heads``: the output blocks of every column (``TablePreprocessor.heads()``);
    ``condition``: index of the categorical block generated rows are conditioned on, or None;
    ``shares``: the condition's category shares the generated rows are drawn with (needed with
    a condition; public or a DP estimate); ``latent``: width of z (0: the rule
    ``latent_size``); ``hidden`` / ``critic_hidden``: Dense widths of the two networks;
    ``pac``: rows per critic input; ``critic_steps``: critic steps per generator step;
    ``temperature``: the Gumbel-softmax tau; ``batch_size``: real rows per critic step (a
    multiple of ``pac``; under DP the expected Poisson batch); ``learning_rate``: Adam's for
    both networks (beta_1 0.5, as in DCGAN); ``mode_seeking``: the weight of the mode-seeking
    term of the generator's loss (Mao et al. 2019; a public term: generated rows only);
    ``classifier``: the weight of the auxiliary classifier's
    term in the generator's loss (AC-GAN, Odena et al. 2017; 0, the default: no classifier;
    on the bank table it did not help, 3 seeds, and a DP run with it collapsed);
    ``column_names``: the heads' source columns, for messages.
    """

    heads: tuple = ()
    condition: int | None = None
    shares: tuple[float, ...] | None = None
    latent: int = 0
    hidden: tuple[int, ...] = (256, 256)
    critic_hidden: tuple[int, ...] = (256, 256)
    pac: int = 10
    critic_steps: int = 1
    temperature: float = 0.2
    epochs: int = 100
    batch_size: int = 500
    learning_rate: float = 2e-4
    steps_per_execution: int = 32
    mode_seeking: float = 0.0
    classifier: float = 0.0
    column_names: tuple[str, ...] = ()  # the heads' source columns (messages only)

    def __post_init__(self):
        heads = as_heads(self.heads)
        check_condition(heads, self.condition, "GAN")
        if self.condition is not None:
            k = heads[self.condition].width
            if self.shares is None or len(self.shares) != k or min(self.shares) < 0 or \
                    not sum(self.shares) > 0:
                raise ValueError(f"a conditional GAN needs {k} non-negative condition shares, "
                                 f"got {self.shares}")
        if min(self.pac, self.critic_steps, self.batch_size) < 1 or self.latent < 0:
            raise ValueError("pac, critic_steps and batch_size must be positive, latent >= 0")
        if self.batch_size % self.pac:
            raise ValueError(f"batch_size {self.batch_size} must be a multiple of pac "
                             f"{self.pac}")
        if not self.hidden or not self.critic_hidden or min(self.hidden + self.critic_hidden) < 1:
            raise ValueError("hidden widths must be positive")
        if not self.temperature > 0:
            raise ValueError("the Gumbel-softmax temperature must be positive")

    @property
    def output_heads(self) -> tuple[Head, ...]:
        return as_heads(self.heads)

    @property
    def latent_size(self) -> int:
        """``latent``, or by rule two dimensions per column, between 16 and 128."""
        return self.latent or int(min(128, max(16, 2 * len(self.output_heads))))

    def to_dict(self) -> dict:
        return asdict(self)

    def training(self):
        """The loop settings (``trainer.TrainConfig``): a private step reads
        ``batch_size / pac`` packs."""
        from cloakflow.models.training.trainer import TrainConfig

        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size // self.pac,
                           learning_rate=self.learning_rate,
                           steps_per_execution=self.steps_per_execution)


@dataclass(frozen=True)
class _Layout:
    starts: tuple[int, ...]  # each column's block start in the row
    width: int  # row width
    logits: tuple[tuple[int, int], ...]  # the generator's raw outputs per column (None: cond)
    gumbel: tuple[tuple[int, int], ...]  # each column's Gumbel noise range (numerics empty)
    raw_width: int
    gumbel_width: int
    cond_width: int


@functools.cache
def _layout(heads: tuple[Head, ...], condition: int | None) -> _Layout:
    logits, gumbel, o, g = [], [], 0, 0
    for i, h in enumerate(heads):
        if i == condition:
            logits.append((o, o))
            gumbel.append((g, g))
            continue
        size = 1 if h.family == NUMERIC else h.width
        logits.append((o, o + size))
        gumbel.append((g, g + (0 if h.family == NUMERIC else h.width)))
        o, g = o + size, g + (0 if h.family == NUMERIC else h.width)
    cond = 0 if condition is None else heads[condition].width
    return _Layout(tuple(starts(heads)), total_width(heads), tuple(logits), tuple(gumbel), o,
                   g, cond)


def condition_columns(config: GanConfig) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(the row's columns outside the condition block, the condition block's columns)."""
    heads = config.output_heads
    lay = _layout(heads, config.condition)
    if config.condition is None:
        return tuple(range(lay.width)), ()
    a = lay.starts[config.condition]
    block = tuple(range(a, a + heads[config.condition].width))
    return tuple(i for i in range(lay.width) if i not in block), block


def _classifies(config: GanConfig) -> bool:
    return config.condition is not None and config.classifier > 0


@functools.cache
def custom_layers() -> dict:
    """The Keras layers of the GAN, registered for loading saved models."""
    import keras
    from keras import ops

    from cloakflow.models.heads import custom_layers as head_layers

    @keras.saving.register_keras_serializable(package="cloakflow")
    class GanRows(keras.layers.Layer):
        """[raw outputs, Gumbel noise, condition one-hot] -> rows in model space (no weights):
        numeric columns as they are, each category block a straight-through Gumbel-softmax
        sample (forward: the one-hot of argmax(logits + g); gradient: that of
        softmax((logits + g) / tau)), the condition block copied."""

        def __init__(self, heads: list, condition: int | None, temperature: float, **kwargs):
            super().__init__(**kwargs)
            self.heads = [[str(f), int(w)] for f, w in heads]
            self.condition = None if condition is None else int(condition)
            self.temperature = float(temperature)

        def call(self, inputs):
            raw, noise, cond = inputs
            parsed = as_heads(self.heads)
            lay = _layout(parsed, self.condition)
            parts = []
            for i, h in enumerate(parsed):
                if i == self.condition:
                    parts.append(cond)
                    continue
                a, b = lay.logits[i]
                if h.family == NUMERIC:
                    parts.append(raw[:, a:b])
                    continue
                ga, gb = lay.gumbel[i]
                soft = ops.softmax((raw[:, a:b] + noise[:, ga:gb]) / self.temperature, axis=-1)
                hard = ops.one_hot(ops.argmax(soft, axis=-1), h.width, dtype=soft.dtype)
                parts.append(soft + ops.stop_gradient(hard - soft))
            return parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)

        def compute_output_shape(self, shapes):
            return (shapes[0][0], total_width(as_heads(self.heads)))

        def get_config(self):
            return {**super().get_config(), "heads": self.heads, "condition": self.condition,
                    "temperature": self.temperature}

    return {**head_layers(), "GanRows": GanRows}


def build_networks(config: GanConfig, seed: int) -> dict:
    """``{"generator": [z | c | g] -> row, "critic": pac rows -> score}``, seeded initialisers
    (layer i gets ``seed + i``), each compiled with Adam(``learning_rate``, beta_1 0.5).

    The generator's one input is (batch, latent + condition width + Gumbel width); the critic's
    (batch, pac * row width)."""
    import keras
    from keras import layers

    cfg = config
    heads = cfg.output_heads
    lay = _layout(heads, cfg.condition)
    latent = cfg.latent_size
    counter = iter(range(10_000))
    block = custom_layers()["CodeBlock"]

    def dense(units: int, activation=None, name: str | None = None):
        return layers.Dense(units, activation=activation, name=name,
                            kernel_initializer=keras.initializers.GlorotUniform(
                                seed=seed + next(counter)))

    width_in = latent + lay.cond_width + lay.gumbel_width
    g_in = keras.Input(shape=(width_in,), name="noise_and_condition")
    z = block(0, latent, name="z")(g_in)
    c = block(latent, latent + lay.cond_width, name="condition")(g_in)
    g = block(latent + lay.cond_width, width_in, name="gumbel")(g_in)
    h = layers.Concatenate(name="z_and_condition")([z, c]) if lay.cond_width else z
    for i, units in enumerate(cfg.hidden):  # CTGAN's residual blocks, with a per-row norm
        r = layers.LayerNormalization(name=f"generator_norm_{i}")(
            dense(units, name=f"generator_{i}")(h))
        h = layers.Concatenate(name=f"generator_residual_{i}")(
            [layers.ReLU(name=f"generator_act_{i}")(r), h])
    raw = dense(lay.raw_width, name="generator_out")(h)
    rows = custom_layers()["GanRows"](
        [[h_.family, h_.width] for h_ in heads], cfg.condition, cfg.temperature,
        name="rows")([raw, g, c])
    generator = keras.Model(g_in, rows, name="gan_generator")

    d_in = keras.Input(shape=(cfg.pac * lay.width,), name="packed_rows")
    d = d_in
    for i, units in enumerate(cfg.critic_hidden):
        d = layers.LeakyReLU(LEAK, name=f"critic_act_{i}")(dense(units, name=f"critic_{i}")(d))
    critic = keras.Model(d_in, dense(1, name="critic_score")(d), name="gan_critic")
    nets = {"generator": generator, "critic": critic}
    if _classifies(cfg):  # one row without its condition -> the condition's logits
        features, block_ = condition_columns(cfg)
        a_in = keras.Input(shape=(len(features),), name="row_without_condition")
        a = a_in
        for i, units in enumerate(cfg.critic_hidden):
            a = layers.LeakyReLU(LEAK, name=f"classifier_act_{i}")(
                dense(units, name=f"classifier_{i}")(a))
        nets["classifier"] = keras.Model(a_in, dense(len(block_), name="classifier_logits")(a),
                                         name="gan_classifier")
    for net in nets.values():
        net.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate, beta_1=0.5))
    return nets


def noise_inputs(config: GanConfig, rng: np.random.Generator, rows: int,
                 condition: np.ndarray | None = None) -> np.ndarray:
    """The generator's input for ``rows`` rows, float32 (rows, latent + cond + Gumbel): z ~
    N(0, I), the condition's one-hot (``condition`` indices, or drawn from
    ``config.shares``) and standard Gumbel noise."""
    heads = config.output_heads
    lay = _layout(heads, config.condition)
    parts = [rng.standard_normal((rows, config.latent_size), dtype=np.float32)]
    if config.condition is not None:
        k = lay.cond_width
        if condition is None:
            p = np.asarray(config.shares, dtype=np.float64)
            condition = rng.choice(k, size=rows, p=p / p.sum())
        condition = np.asarray(condition, dtype=np.int64).reshape(-1)
        if len(condition) != rows or condition.min(initial=0) < 0 or \
                condition.max(initial=0) >= k:
            raise ValueError(f"condition must be {rows} indices in [0, {k})")
        parts.append(np.eye(k, dtype=np.float32)[condition])
    u = rng.random((rows, lay.gumbel_width), dtype=np.float32)
    parts.append(-np.log(-np.log(np.clip(u, 1e-7, 1 - 1e-7))).astype(np.float32))
    return np.concatenate(parts, axis=1)


def _critic_real(y, scores):
    """softplus(-D(x)) per real pack: the critic's private term."""
    from keras import ops

    return ops.softplus(-scores[:, 0])


def phases(config: GanConfig) -> list:
    """The critic phase (private: real packs; public: generated packs) and the generator
    phase (public only), ``config.critic_steps`` critic steps per generator step."""
    from keras import ops

    from cloakflow.models.training.phases import Phase, PrivateTerm, PublicTerm

    pac, width = config.pac, _layout(config.output_heads, config.condition).width
    packs = config.batch_size // pac

    def generated(view, inputs):
        rows = view("generator", inputs)
        return view("critic", ops.reshape(rows, (-1, pac * width)))

    def critic_fake(view, inputs):
        return ops.mean(ops.softplus(generated(view, inputs)[:, 0]))

    latent, seeking = config.latent_size, config.mode_seeking

    features, block_ = condition_columns(config)
    classify, weight = _classifies(config), config.classifier

    def class_loss(y, logits):
        """Cross-entropy of the condition given the rest of the row (per row)."""
        return -ops.sum(y * ops.log_softmax(logits, axis=-1), axis=-1)

    def generator_loss(view, inputs):
        rows = view("generator", inputs)
        loss = ops.mean(ops.softplus(-view("critic", ops.reshape(rows, (-1, pac * width)))[:, 0]))
        if classify:  # generated rows should say their condition as real rows do
            loss = loss + weight * ops.mean(class_loss(
                ops.take(rows, np.asarray(block_), axis=1),
                view("classifier", ops.take(rows, np.asarray(features), axis=1))))
        if not seeking:
            return loss
        # mode seeking (Mao et al. 2019): rows of two latent draws should differ as much as
        # the draws do; public (generated rows only)
        half = ops.shape(rows)[0] // 2
        moved = ops.mean(ops.abs(rows[:half] - rows[half:2 * half]))
        apart = ops.mean(ops.abs(inputs[:half, :latent] - inputs[half:2 * half, :latent]))
        return loss + seeking / (moved / apart + 1e-5)

    def draw(rng, rows):
        return noise_inputs(config, rng, rows * pac)

    # the classifier learns on the first row of each real pack (its private term, clipped
    # jointly with the critic's under DP)
    private = (PrivateTerm("critic", _critic_real),) + (
        (PrivateTerm("classifier", class_loss, columns=features, targets=block_),)
        if classify else ())
    return [Phase("critic", tuple(t.network for t in private), private=private,
                  public=PublicTerm(critic_fake, draw, rows=packs), steps=config.critic_steps),
            Phase("generator", ("generator",), public=PublicTerm(generator_loss, draw,
                                                                 rows=packs))]


def pack(x: np.ndarray, pac: int, rng: np.random.Generator) -> np.ndarray:
    """Rows of ``x`` in a random order, ``pac`` side by side: (len(x) // pac, pac * width);
    the last ``len(x) % pac`` rows of the order are left out."""
    if pac == 1:
        return np.ascontiguousarray(x, dtype=np.float32)
    order = rng.permutation(len(x))[: len(x) // pac * pac]
    return np.ascontiguousarray(x[order].reshape(len(order) // pac, pac * x.shape[1]),
                                dtype=np.float32)


@dataclass
class Gan:
    """A built GAN: its configuration and networks."""

    config: GanConfig
    networks: dict

    @property
    def generator(self):
        return self.networks["generator"]

    def sample(self, rows: int, rng: np.random.Generator,
               condition: np.ndarray | None = None) -> np.ndarray:
        """Draw ``rows`` rows in the preprocessor's space (numerics as CDF values in [0, 1],
        categories one-hot), seeded by ``rng``.

        Args:
            condition: with a conditional model, each row's category index, shape (rows,)
                (None: drawn from ``config.shares``).

        Raises:
            ValueError: condition indices out of range or of the wrong length.
        """
        from scipy.special import ndtr

        heads = self.config.output_heads
        lay = _layout(heads, self.config.condition)
        inputs = noise_inputs(self.config, rng, rows, condition)
        out = np.concatenate([np.asarray(self.generator(inputs[i:i + 8192], training=False))
                              for i in range(0, rows, 8192)]) if rows else \
            np.zeros((0, lay.width), dtype=np.float32)
        for h, s in zip(heads, lay.starts, strict=True):
            if h.family == NUMERIC:
                out[:, s] = np.clip(ndtr(out[:, s]), 0.0, 1.0)
        return out.astype(np.float32)


@dataclass
class GanResult:
    """A trained GAN and what its training did (``log``: ``phases.PhaseLog`` with a
    ``history["loss"]`` of the generator's loss; ``health``: the probes' findings; ``seed``
    None for a DP run)."""

    gan: Gan
    log: object
    seed: int | None
    health: dict = field(default_factory=dict)

    @property
    def synthesizer(self) -> Gan:
        return self.gan

    def portable(self) -> GanWeights:
        return GanWeights(self.gan.config, GAN.get_weights(self.gan.networks), self.log,
                          self.seed, self.health)


@dataclass
class GanWeights:
    """A trained GAN without a Keras object (configuration, weights, log, seed, health);
    ``result()`` rebuilds it."""

    config: GanConfig
    weights: dict
    log: object
    seed: int | None
    health: dict = field(default_factory=dict)

    def result(self) -> GanResult:
        networks = build_networks(self.config, 0)
        GAN.set_weights(networks, self.weights)
        return GanResult(Gan(self.config, networks), self.log, self.seed, self.health)


def probe(gan: Gan, rng: np.random.Generator, rows: int = 2000,
          reference: np.ndarray | None = None) -> dict:
    """What a few generated rows say about the training's health.

    Returns:
        ``{"collapsed": [column index, ...], "fidelity": float | None}``: the category blocks
        (condition excluded) whose generated rows hold one level in at least 99% of rows
        while the reference rows (None: any) spread over more than one level with none
        above 90%, and the numeric columns whose generated CDF values have an
        interquartile range under 0.01 (the reference's, if given, 0.05 or more); and,
        with ``reference`` (rows in the preprocessor's space), the mean over columns of
        1 - TVD of the category shares and 1 - KS of the CDF values.
    """
    heads = gan.config.output_heads
    lay = _layout(heads, gan.config.condition)
    x = gan.sample(rows, rng)
    collapsed, scores = [], []
    for i, (h, s) in enumerate(zip(heads, lay.starts, strict=True)):
        if h.family == NUMERIC:
            q25, q75 = np.quantile(x[:, s], [0.25, 0.75])
            if q75 - q25 < 0.01 and (reference is None or np.subtract(*np.quantile(
                    reference[:, s], [0.75, 0.25])) >= 0.05):
                collapsed.append(i)  # half the rows within 1% of the CDF: one value
            if reference is not None:
                a, b = np.sort(x[:, s]), np.sort(reference[:, s])
                grid = np.concatenate([a, b])
                ks = np.abs(np.searchsorted(a, grid, "right") / len(a)
                            - np.searchsorted(b, grid, "right") / len(b)).max()
                scores.append(1.0 - float(ks))
            continue
        shares = x[:, s:s + h.width].mean(axis=0)
        real = None if reference is None else reference[:, s:s + h.width].mean(axis=0)
        if reference is not None:
            scores.append(1.0 - 0.5 * float(np.abs(shares - real).sum()))
        if i == gan.config.condition or h.width < 2:
            continue
        if shares.max() >= 0.99 and (real is None or ((real > 0).sum() > 1
                                                      and real.max() < 0.9)):
            collapsed.append(i)
    return {"collapsed": collapsed, "fidelity": float(np.mean(scores)) if scores else None}


def _name(config: GanConfig, i: int) -> str:
    return config.column_names[i] if config.column_names else f"column {i}"


def train_gan(x: np.ndarray, config: GanConfig, seed: int = 0, *, budget=None,
              clip_norm: float | None = None, rng: np.random.Generator | None = None,
              on_epoch=None, expected_batch: float | None = None, probe_every: int = 5,
              on_probe=None) -> GanResult:
    """Train the GAN on the preprocessed rows ``x`` in the phase trainer.

    Plain (``budget`` None): ``config.epochs`` passes of the critic over the real packs (a
    secret permutation seeded by ``seed`` packs the rows once), initialisation, row order and
    noise from ``seed``. With a budget (``dp_sgd.plan``): DP-SGD on the critic's private term
    for exactly its steps, ``pac`` 1, every random draw from secret OS-entropy streams
    (``rng``: tests only).

    Every ``probe_every`` epochs the generator draws 2,000 rows (``probe``): a category block
    collapsing to one level is recorded (and passed to ``on_probe``); plainly the probe's
    fidelity against 2,000 training rows is recorded too (under DP the probe reads no real
    row: the check is on the generated rows alone).

    Args:
        x: float32 (rows, width) in the preprocessor's space.
        on_epoch: ``on_epoch(epoch, metrics)`` with ``"critic.private"`` (mean
            softplus(-D) on real packs), ``"critic.public"``, ``"generator.public"`` and
            ``"clipped"``.
        on_probe: ``on_probe(epoch, probe_result)``.

    Returns:
        ``GanResult``; ``health``: ``{"probes": [{"epoch", "collapsed", "fidelity"}, ...],
        "collapsed": columns collapsed at the last probe, "ever_collapsed": at any probe,
        "diverged": bool}`` (columns by name).

    Raises:
        ValueError: ``x`` does not match the heads' width; ``pac`` > 1 under DP; a loss
            that became NaN or infinite (the run diverged).
    """
    from cloakflow.models.training.phases import train_phases

    x = np.ascontiguousarray(x, dtype=np.float32)
    lay = _layout(config.output_heads, config.condition)
    if x.ndim != 2 or len(x) < config.pac or x.shape[1] != lay.width:
        raise ValueError(f"need a (rows >= {config.pac}, {lay.width}) matrix for these heads, "
                         f"got shape {x.shape}")
    if budget is not None and config.pac != 1:
        raise ValueError("under DP each sampled row is its own pack: set pac = 1")
    xm = to_model_space(x, config.output_heads)
    if budget is None:
        init_seed, pack_rng, probe_rng = seed, np.random.default_rng([seed, 3]), \
            np.random.default_rng([seed, 4])
        reference = x[np.random.default_rng([seed, 5]).choice(len(x), min(2000, len(x)),
                                                              replace=False)]
    else:
        from cloakflow.models.training.dp_sgd import secret_streams

        init, pack_rng, probe_rng, rng = secret_streams(4, rng)
        init_seed, reference = int(init.integers(0, 2**30)), None
    networks = build_networks(config, init_seed)
    gan = Gan(config, networks)
    health: dict = {"probes": [], "collapsed": [], "ever_collapsed": [], "diverged": False}
    generator_losses: list[float] = []

    def epoch_done(epoch: int, metrics: dict) -> None:
        losses = [metrics.get(k) for k in ("critic.private", "critic.public",
                                           "generator.public")]
        if any(v is not None and not np.isfinite(v) for v in losses):
            health["diverged"] = True
            raise ValueError(f"GAN training diverged at epoch {epoch}: losses {losses}")
        generator_losses.append(float(metrics.get("generator.public", float("nan"))))
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        if epoch % probe_every == 0 or epoch == config.epochs:
            found = probe(gan, probe_rng, reference=reference)
            names = [_name(config, i) for i in found["collapsed"]]
            health["probes"].append({"epoch": epoch, "collapsed": names,
                                     "fidelity": found["fidelity"]})
            health["collapsed"] = names
            health["ever_collapsed"] = sorted(set(health["ever_collapsed"]) | set(names))
            if on_probe is not None:
                on_probe(epoch, found)

    packed = pack(xm, config.pac, pack_rng)
    log, _ = train_phases(networks, phases(config), packed, config.training(), budget=budget,
                          clip_norm=clip_norm, seed=init_seed if budget is None else 0,
                          rng=rng if budget is not None else None,
                          expected_batch=expected_batch, on_epoch=epoch_done)
    log.history["loss"] = generator_losses
    return GanResult(gan, log, seed if budget is None else None, health)


class GanFamily(ModelFamily):
    """The conditional tabular GAN as a registered model (``models.registry``): networks
    ``generator`` and ``critic``, trained in two phases (critic: private real packs and
    public generated packs; generator: public). Feeds synthetic releases."""

    name = "gan"
    description = ("a conditional tabular GAN (logistic loss, packed critic, straight-through "
                   "Gumbel-softmax categories)")
    models_target = True
    counted = "condition histogram"
    release = "synthetic"
    command = "cloakflow synthesize"
    federates = False  # its two networks' federated rounds are not built

    def preprocessor_options(self) -> dict:
        from cloakflow.tasks.data.preprocess import DISCRETE_LEVELS

        return {"with_target": True, "missing_state": True, "discrete_levels": DISCRETE_LEVELS}

    def spec(self, pre, loop, latent: int = 0, shares: Sequence[float] | None = None,
             pac: int = 10) -> GanConfig:
        """The ``GanConfig`` over a fitted preprocessor's heads, conditioned on the target
        (``shares``: its category shares; default uniform)."""
        from cloakflow.tasks.release.synthetic import parse_condition

        cond = parse_condition(None, pre, "<shared schema>")
        k = None if cond.index is None else pre.heads()[cond.index][1]
        shares = None if k is None else tuple(shares or [1.0 / k] * k)
        batch = max(pac, loop.batch_size // pac * pac)
        return GanConfig(heads=pre.heads(), condition=cond.index, shares=shares,
                         latent=int(latent or 0), pac=pac, epochs=loop.epochs,
                         batch_size=batch, learning_rate=loop.learning_rate)

    def member_names(self, profile) -> list[str]:
        return ["generator", "critic"]  # and "classifier" with GanConfig.classifier > 0

    def networks(self, spec: GanConfig, seed: int) -> dict:
        return build_networks(spec, seed)

    def phases(self, spec: GanConfig, networks: dict) -> list:
        return phases(spec)

    def inputs(self, spec: GanConfig, x: np.ndarray) -> np.ndarray:
        return pack(to_model_space(x, spec.output_heads), spec.pac, np.random.default_rng(0))

    def loop(self, spec: GanConfig):
        return spec.training()

    def counts(self, spec: GanConfig, pre, x: np.ndarray) -> np.ndarray:
        _, start, stop = pre.column_blocks()[spec.condition]
        return x[:, start:stop].sum(axis=0).astype(np.float64)


GAN = GanFamily()


def dp_config(config: GanConfig, expected_batch: float) -> GanConfig:
    """``config`` as DP-SGD trains it: one row per pack, the expected Poisson batch as the
    rows a step generates."""
    return replace(config, pac=1, batch_size=max(1, int(round(expected_batch))))
