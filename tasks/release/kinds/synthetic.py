"""The ``synthetic`` release kind: rows sampled from a generative model fitted to the training
rows (``tasks.release.synthetic``), plain or differentially private end to end.

Its stages (``SyntheticStages``) run in the one pipeline (``flows/release.py``): prepare the
table (and its constraints' reversible transform), plan the DP budget (DP counts and
quantiles, DP-SGD: ``tasks.privacy.dp_synthetic``), train the VAE (or take a federation's
global VAE), sample rows, measure fidelity and TSTR against the control rows, attack them,
judge, publish ``synthetic.parquet``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from cloakflow.tasks import console, tracking
from cloakflow.tasks.privacy.dp_synthetic import SYNTHETIC_STATEMENT
from cloakflow.tasks.release import synthetic as syn
from cloakflow.tasks.release.kinds import (
    Judged,
    Package,
    ReleaseKind,
    ReleaseRun,
    min_utility,
    warn_unused_under_dp,
)


class SyntheticLimits(BaseModel):
    """The policy limits of a synthetic release (``privacy.policy.synthetic`` in the profile),
    each compared with a measurement on the published rows against the control rows."""

    model_config = ConfigDict(extra="forbid")

    max_dcr_share: float = Field(
        0.6, ge=0.5, le=1, description="largest share of synthetic rows closer to a training "
                                       "row than to a control row (0.5: no closer to the rows "
                                       "trained on than to unseen ones)")
    max_exact_copy_excess: float = Field(
        0.01, ge=0, le=1, description="largest share of synthetic rows that copy a training "
                                      "row exactly, minus the control rows' own share")
    max_membership_auc: float = Field(
        0.6, ge=0.5, le=1, description="largest membership-inference AUC (distance and "
                                       "density-ratio attacks)")
    max_membership_tpr: float = Field(
        0.05, ge=0, le=1, description="largest membership-inference TPR at 1% FPR (distance "
                                      "and density-ratio attacks)")
    max_detection_auc: float | None = Field(
        None, ge=0.5, le=1, description="largest ROC AUC of a classifier telling synthetic "
                                        "rows from control rows (0.5: indistinguishable); "
                                        "null: reported, not judged")
    min_utility: float | None = min_utility("the forest's TSTR")

# what a holder's release from a federation's VAE does not use: nothing trains there
TRAINING_PARAMS = ("epochs", "batch_size", "latent", "dp_epsilon", "dp_delta", "dp_clip",
                   "dp_epochs", "dp_sampling_rate")


class SynthesisOutcome(BaseModel):
    """What a synthesize run returns: the release folder and the report."""

    release: str
    mlflow_run_id: str
    report_markdown: str
    verdict: str


class SyntheticStages:
    """The pipeline stages of a synthetic release (``tasks.release.kinds.Stages``)."""

    def resolve(self, params):
        """A holder's release from a federation's VAE (``models_from``) takes its split."""
        if params.models_from is None:
            return params
        from cloakflow.tasks.training.federation import adopt_federation_split

        return adopt_federation_split(params)

    def pooled(self, run: ReleaseRun) -> bool:
        return False  # the attacks run in the flow's process

    def prepare(self, run: ReleaseRun) -> None:
        """The table with the synthesizer's encoding (target, missing states, discrete
        levels; public bounds under DP or in a federation, a secret split under DP), the
        condition, and the model's view: the rows, or with constraints their transform."""
        from cloakflow.tasks.data import constraints
        from cloakflow.tasks.data.preprocess import DISCRETE_LEVELS

        p, private = run.params, run.params.dp_epsilon is not None
        federated = p.models_from is not None
        data = run.data = run.steps.prepare(
            run.profile, p.input_path, p.control_fraction, p.seed, run.parent, run.timings,
            public_bounds=private or federated, numeric="quantile",
            options={"with_target": True, "missing_state": True,
                     "discrete_levels": DISCRETE_LEVELS,
                     "bound_state": p.bound_states and not private and not federated,
                     "value_support": not private and not federated},
            secret_split=private)
        st = run.state
        st["cond"] = syn.parse_condition(p.condition, data.pre, data.source_name)
        st["rules"] = constraints.ConstraintSet(run.profile, constraints.kinds_from(data.pre),
                                                private)
        st["train_m"], st["mpre"], st["x_model"], st["cond_m"] = _model_view(run)
        st["counts"] = st["cond_m"].counts(st["x_model"], st["mpre"])

    def budget(self, run: ReleaseRun) -> None:
        """The label shares and row-count estimate the rows are drawn with, and the DP
        section: a federation's (its DP counts), a DP plan's (spent in the ledger before any
        DP mechanism reads the rows), or none."""
        p, st = run.params, run.state
        st["plan"] = st["federation"] = None
        if p.models_from is not None:
            st["vae"], st["federation"], shares, estimate, dp_release = _federated_vae(run)
        elif p.dp_epsilon is not None:
            warn_unused_under_dp(p, {
                "epochs": f"DP-SGD trains --dp-epochs {p.dp_epochs} epochs",
                "batch_size": f"each step reads a Poisson sample of rate --dp-sampling-rate "
                              f"{p.dp_sampling_rate:g}"})
            shares, estimate, dp_release = _dp_budget(run)
        else:
            counts = st["counts"]
            shares, estimate, dp_release = counts / counts.sum(), float(len(st["x_model"])), None
        st["shares"], run.budget = shares, dp_release
        st["rows"] = p.rows or int(round(estimate))
        st["estimate"] = estimate

    def train(self, run: ReleaseRun) -> None:
        """The model (``--model``: the VAE or the GAN), plain or DP-SGD; a federation's global
        VAE trains nothing here."""
        p, st = run.params, run.state
        if p.models_from is not None:
            run.models, st["config"] = _FederatedVae(st["vae"], st["federation"]), \
                st["vae"].config
            return
        private = p.dp_epsilon is not None
        expected = p.dp_sampling_rate * st["estimate"] if private else None
        config = st["config"] = _model_config(run, expected)
        train = train_gan if p.model == "gan" else train_vae
        with run.timings("train"):  # the task returns weights and a log, no Keras object
            run.models = run.steps.task(train, f"train-{p.model}", f"train[{p.model}]")(
                st["x_model"], config, p.seed, run.parent, st["plan"], expected).result()

    def build(self, run: ReleaseRun) -> None:
        """Sample the rows (with constraints: decode their transform, reject what breaks
        a rule, report the rejection rate)."""
        with run.timings("sample"):
            _sample(run)
            console.step(f"sampled {run.state['rows']} synthetic rows")

    def evaluate(self, run: ReleaseRun) -> None:
        """Fidelity and TSTR against the control rows, and each constraint's valid share."""
        data, st = run.data, run.state
        with run.timings("evaluate"):
            notes, st["compared"] = syn.compare(
                data.pre, x_syn=st["x_syn"], x_train=data.x, x_control=data.x_control,
                synthetic=run.release, train=data.train_frame, control=data.control_frame,
                condition=st["cond"])
            evaluate = run.steps.task(syn.evaluate, "evaluate-synthetic", "evaluate[synthetic]")
            run.evaluation = notes if st["compared"] is None else evaluate(
                data.pre, run.profile, notes, st["compared"], run.params.seed)
            if st["rules"]:
                run.evaluation["constraints"] = st["rules"].report(
                    data.train_frame, run.release, st["rejection"])

    def attack(self, run: ReleaseRun) -> None:
        """Distances to closest records, exact copies, membership inference, anonymeter."""
        rows = run.state["compared"]
        if not run.params.privacy_attacks or rows is None:
            return
        with run.timings("attacks"):
            attack = run.steps.task(syn.attack_rows, "attack-synthetic", "attack[synthetic]")
            run.attacks = run.evaluation["privacy"] = attack(run.data.pre, run.profile, rows,
                                                             run.params.seed)

    def judge(self, run: ReleaseRun) -> Judged:
        return syn.judged(run.evaluation, run.profile)

    def render(self, run: ReleaseRun, outcome) -> str:
        """The one-page report and its plots, logged to MLflow and the flow run's page."""
        p, st = run.params, run.state
        gate = st["gate"] = syn.gate_dict(outcome)
        report = st["report"] = syn.report_markdown(
            run.profile.name, run.evaluation, gate, rows=st["rows"], model=p.model,
            dp=run.budget, condition=st["cond"], profile_target=run.profile.target)
        st["plots"] = _log_report(run, report)
        return report

    def package(self, run: ReleaseRun) -> Package:
        """The model's configuration and decoder to MLflow, the manifest, the report and
        plots (not under a DP release's private report) and the README."""
        p, st, data, pre = run.params, run.state, run.data, run.data.pre
        result, config, frame = run.models, st["config"], run.release
        tracking.log_text(run.parent, json.dumps(config.to_dict(), default=str),
                          f"model/{p.model}_config.json")
        network, sample = _logged_network(result.synthesizer, st["conditions"][:5])
        tracking.log_keras_model(run.parent, network, sample, name=syn.MLFLOW_MODEL[p.model])
        from cloakflow.tasks.release.manifest import Source

        manifest = syn.manifest(
            profile=run.profile, params=_published_params(p), source=Source(
                file=data.source_name, sha256=None if run.budget else data.source_sha,
                format=data.source_format),
            parent=run.parent, flow_run_id=run.flow_run_id, rows=st["rows"], frame=frame,
            config=config, train_log=result.log, training_rows=len(data.x),
            control_rows=len(data.x_control), condition=st["cond"],
            evaluation=run.evaluation, gate=st["gate"], dp=run.budget,
            nullable={s.missing_of for s in pre.specs
                      if s.missing_of and s.companion == "missing"},
            federation=st["federation"], duplicates=data.duplicates.to_dict(),
            health=getattr(result, "health", None))
        documents, readme = _folder_documents(run.parent, st["report"], st["plots"],
                                              manifest, frame)
        return Package({"synthetic": frame}, manifest, documents, readme, st["report"])

    def outcome(self, run: ReleaseRun) -> SynthesisOutcome:
        return SynthesisOutcome(release=run.folder, mlflow_run_id=run.parent,
                                report_markdown=run.state["report"], verdict=run.verdict)


def train_vae(x: np.ndarray, config, seed: int, parent: str, plan=None,
              expected_batch: float | None = None):
    """Train the VAE (plain, or DP-SGD with ``plan``), printing each epoch and logging the
    loss (mean negative ELBO per row, nats) to the MLflow run; returns its weights and log
    (``models.vae.VaeWeights``: no Keras object crosses the task's boundary)."""
    from cloakflow.models.vae import train_vae as fit

    total = plan.epochs if plan is not None else config.epochs

    def on_epoch(epoch: int, metrics: dict) -> None:
        console.epoch(epoch, f"VAE epoch {epoch}/{total}: loss {metrics['loss']:.4f}"
                      + (f", clipped {metrics['clipped']:.2f}" if plan is not None else ""),
                      last=total)
        tracking.log_metrics(parent, {"vae.loss": metrics["loss"]}, step=epoch)

    if plan is None:
        return fit(x, config, seed=seed, on_epoch=on_epoch).portable()
    return fit(x, config, budget=plan.sgd, clip_norm=plan.clip_norm, on_epoch=on_epoch,
               expected_batch=expected_batch).portable()


def train_gan(x: np.ndarray, config, seed: int, parent: str, plan=None,
              expected_batch: float | None = None):
    """Train the GAN (plain, or DP-SGD on its critic with ``plan``), printing every 10th
    epoch and each probe's finding, logging both networks' losses and the probes to the
    MLflow run; returns its weights, log and health (``models.gan.GanWeights``)."""
    from cloakflow.models.gan import train_gan as fit

    total = plan.epochs if plan is not None else config.epochs
    names = {"critic.private": "critic_real", "critic.public": "critic_fake",
             "generator.public": "generator"}

    def on_epoch(epoch: int, metrics: dict) -> None:
        m = {k: metrics.get(k, float("nan")) for k in names}  # a phase with no step: nan
        console.epoch(epoch, f"GAN epoch {epoch}/{total}: critic {m['critic.private']:.3f}"
                      f" real / {m['critic.public']:.3f} generated, generator "
                      f"{m['generator.public']:.3f}"
                      + (f", clipped {metrics['clipped']:.2f}" if plan is not None else ""),
                      last=total)
        tracking.log_metrics(parent, {f"gan.{names[k]}_loss": v for k, v in metrics.items()
                                      if k in names}, step=epoch)

    def on_probe(epoch: int, found: dict) -> None:
        if found["fidelity"] is not None:
            tracking.log_metrics(parent, {"gan.probe_fidelity": found["fidelity"]}, step=epoch)
        if found["collapsed"]:
            console.warn(f"GAN epoch {epoch}: mode collapse: "
                         + ", ".join(config.column_names[i] if config.column_names else str(i)
                                     for i in found["collapsed"])
                         + " generated with one level in 99% or more of rows")

    if plan is None:
        return fit(x, config, seed=seed, on_epoch=on_epoch, on_probe=on_probe).portable()
    return fit(x, config, budget=plan.sgd, clip_norm=plan.clip_norm, on_epoch=on_epoch,
               on_probe=on_probe, expected_batch=expected_batch).portable()


def _model_config(run: ReleaseRun, expected_batch: float | None):
    """The ``--model``'s configuration over the model's view of the table (under DP the DP
    learning rate; the GAN's condition shares are the release's: the training rows' own, or
    their DP estimate)."""
    from cloakflow.tasks.privacy import dp_synthetic as dps

    p, st = run.params, run.state
    private = p.dp_epsilon is not None
    heads, cond = st["mpre"].heads(), st["cond_m"].index
    if p.model == "gan":
        from cloakflow.models.gan import GanConfig

        pac = 1 if private else GanConfig.pac
        return GanConfig(heads=heads, condition=cond, latent=p.latent, epochs=p.epochs,
                         shares=None if cond is None else tuple(float(v) for v in st["shares"]),
                         column_names=tuple(s.name for s in st["mpre"].specs), pac=pac,
                         batch_size=max(1, int(round(expected_batch))) if private else
                         max(pac, p.batch_size // pac * pac),
                         **({"learning_rate": dps.DP_GAN_LEARNING_RATE} if private else {}))
    from cloakflow.models.vae import VaeConfig

    return VaeConfig(heads=heads, condition=cond, latent=p.latent, epochs=p.epochs,
                     batch_size=p.batch_size,
                     **({"learning_rate": dps.DP_LEARNING_RATE} if private else {}))


def _spread(run: ReleaseRun) -> np.random.Generator:
    """The generator of the model's spread point masses (``TablePreprocessor.transform``'s
    ``spread``): the seed's without DP, OS entropy under DP (as every DP run's randomness)."""
    return np.random.default_rng() if run.params.dp_epsilon is not None else \
        np.random.default_rng([run.params.seed, 2])


def _model_view(run: ReleaseRun):
    """(rows, preprocessor, encoded rows, condition) of what the model sees: the source rows,
    or with the profile's constraints their reversible transform (a bad formula fails here),
    encoded with their point masses spread (``_spread``; the evaluation reads them unspread)."""
    from cloakflow.tasks.data.preprocess import TablePreprocessor

    data, st, source = run.data, run.state, run.data.source_name
    rules, pre = st["rules"], data.pre
    if not rules:
        return data.train_frame, pre, pre.transform(data.train_frame, source,
                                                     spread=_spread(run)), st["cond"]
    rules.fit(data.train_frame).valid(data.train_frame)
    train_m = rules.encode(data.train_frame)
    mpre = TablePreprocessor(rules.model_profile(), public_bounds=pre.public_bounds,
                             numeric=pre.numeric, with_target=pre.with_target,
                             missing_state=pre.missing_state,
                             discrete_levels=pre.discrete_levels,
                             bound_state=pre.bound_state,
                             value_support=pre.value_support).fit(train_m, source)
    console.step("constraints: " + "; ".join(f"{c.describe()} ({rules.kept_by(c)})"
                                             for c in rules.rules))
    return (train_m, mpre, mpre.transform(train_m, source, spread=_spread(run)),
            syn.parse_condition(run.params.condition, mpre, source))


def _dp_budget(run: ReleaseRun):
    """(label shares, row-count estimate, DP section) of a DP release: the plan, spent in
    the ledger before any DP mechanism reads the rows, the DP condition counts and the DP
    quantile knots (which refit the preprocessor)."""
    from cloakflow.models.training.dp_counts import noisy_counts, shares
    from cloakflow.tasks.privacy import dp_synthetic as dps
    from cloakflow.tasks.privacy.ledger import spend_for_run

    p, st, data = run.params, run.state, run.data
    mpre, rules = st["mpre"], st["rules"]
    dps.require_public_bounds(mpre.specs, data.source_name, rules.model_profile() if rules
                              else run.profile)  # before the (slow) plan
    plan = st["plan"] = dps.plan_synthesis_dp(
        p.dp_epsilon, p.dp_delta, p.dp_clip, p.dp_epochs, p.dp_sampling_rate,
        dps.knot_columns(mpre.specs), dps.knot_levels(mpre.specs), model=p.model)
    # the section is filled in after the knots: only the column lists change
    dp_release = dps.dp_section(plan, mpre.bounds_used(), p.dp_report)
    spend_for_run(run.profile, run.parent, data.source_sha, data.source_rows, len(data.x),
                  dp_release)
    noisy = noisy_counts(st["counts"], plan.histogram_sigma)
    estimate = max(1.0, float(noisy.sum()))
    if plan.knot_columns:
        dp_release = _dp_knots(run, plan, estimate)
    return shares(noisy), estimate, dp_release


def _dp_knots(run: ReleaseRun, plan, estimate: float) -> dict:
    """DP quantile knots for the continuous columns; the model's preprocessor refit on them
    (and the evaluation's, when there is one preprocessor); returns the final DP section."""
    from cloakflow.tasks.privacy import dp_synthetic as dps

    st, data, source = run.state, run.data, run.data.source_name
    knots, values, info = dps.dp_quantile_knots(st["train_m"], st["mpre"], plan, estimate)
    mpre = st["mpre"] = dps.refit_with_knots(st["mpre"], st["train_m"], knots, values, source)
    st["x_model"] = mpre.transform(st["train_m"], source, spread=_spread(run))
    if not st["rules"]:  # one preprocessor: the evaluation reads the knotted one too
        data.pre, data.x = mpre, mpre.transform(st["train_m"], source)
        data.x_control = mpre.transform(data.control_frame, source, unseen="ignore")
    tracking.log_text(run.parent, mpre.to_json(), "preprocessing/state.json")
    return dps.dp_section(plan, mpre.bounds_used(), run.params.dp_report, info)


def _sample(run: ReleaseRun) -> None:
    """Draw ``rows`` rows: ``run.release`` (source columns) and ``state["x_syn"]`` (encoded),
    with the conditions drawn for the decoder's logged signature."""
    from cloakflow.tasks.data import constraints

    st, data = run.state, run.data
    pre, rules, cond_m, shares = data.pre, st["rules"], st["cond_m"], st["shares"]
    vae, rows, mpre = run.models.synthesizer, st["rows"], st["mpre"]
    rng = np.random.default_rng([run.params.seed, 1])
    columns = [c for c in data.train_frame.columns if c in pre.modelled()]
    st["rejection"] = None
    if not rules:
        conditions = syn.draw_conditions(rows, st["cond"], shares, rng)
        x_syn = vae.sample(rows, rng, conditions)
        syn.keep_condition(x_syn, pre, st["cond"])
        st["conditions"], st["x_syn"] = conditions, x_syn
        run.release = pre.reverse_transform(x_syn).select(columns)
        return

    def draw(n: int):
        x = vae.sample(n, rng, syn.draw_conditions(n, cond_m, shares, rng))
        syn.keep_condition(x, mpre, cond_m)
        return rules.decode(mpre.reverse_transform(x)).select(columns)

    frame, rejection = constraints.sample_valid(draw, rows, rules)
    st["x_syn"] = pre.transform(frame, data.source_name, unseen="ignore")
    st["conditions"] = syn.draw_conditions(5, cond_m, shares, rng)
    st["rejection"], run.release = rejection, frame
    if rejection["rejected"]:
        console.step(f"constraints: {rejection['rejected']} of {rejection['drawn']} drawn rows "
                     f"rejected ({100 * rejection['rate']:.1f}%)")


def _published_params(params) -> dict:
    """The manifest's parameters: without the training ones when a federation's VAE samples
    (its settings are the federation manifest's)."""
    out = params.model_dump()
    if params.models_from is not None:
        out = {k: v for k, v in out.items() if k not in TRAINING_PARAMS}
    return out


class _FederatedVae:
    """A federation's global VAE where the pipeline expects a training result: its log holds
    the federation's epochs (rounds × local epochs) and no loss (the holders' losses are in
    the federation's MLflow run)."""

    def __init__(self, vae, federation: dict):
        from cloakflow.models.training.trainer import TrainLog

        self.vae = self.synthesizer = vae
        self.log = TrainLog(None, float("inf"))
        self.log.epochs_run = federation["epochs"]
        self.log.seconds = 0.0


def _federated_vae(run: ReleaseRun):
    """The global VAE of ``params.models_from`` for this holder, the label shares its rows are
    drawn with and the default row count: under the federation's DP, its DP condition counts
    (covered by its epsilon), else its own training rows; and the release's DP section (the
    holder's, from the federation) or None.

    Raises:
        ConstraintError: the profile has constraints (a federation's VAE models the shared
            schema without them).
        FederationMismatch: see ``tasks.training.federation.federation_for``; or a condition
            on another column than the one the global VAE was conditioned on.
    """
    from cloakflow.models.training.dp_counts import shares
    from cloakflow.tasks.data.constraints import ConstraintError
    from cloakflow.tasks.training.federation import FederationMismatch, vae_from_federation

    p, data, st = run.params, run.data, run.state
    pre, cond, counts, source = data.pre, st["cond"], st["counts"], data.source_name
    if st["rules"]:
        raise ConstraintError(f"{source}: constraints with --models-from: a federation's VAE "
                              "models the shared schema without them; remove the profile's "
                              "constraints")
    vae, federation, entry = vae_from_federation(p.models_from, p.holder, pre, p.seed,
                                                 p.control_fraction, data.source_sha)
    if vae.config.condition != cond.index:
        raise FederationMismatch(
            f"{source}: --condition {p.condition}: the federation's VAE is conditioned on "
            f"{pre.specs[vae.config.condition].name!r}; condition on that column or none")
    settings = json.loads((Path(p.models_from) / "manifest.json").read_text())["settings"]
    federation["epochs"] = int(settings["num-server-rounds"]) * int(settings["local-epochs"])
    dp = federation["dp"]
    if dp is None:
        return vae, federation, counts / counts.sum(), float(counts.sum()), None
    noisy = np.asarray(entry["dp_counts"], dtype=np.float64)
    release_dp = {**dp, "statement": federation["statement"],
                  "covered": "the federation's DP-SGD on this holder's training rows over all "
                             "rounds and its DP condition counts (the labels and the default "
                             "row count of this release)"}
    return vae, federation, shares(noisy), max(1.0, float(noisy.sum())), release_dp


def _logged_network(synthesizer, conditions: np.ndarray):
    """(the network MLflow keeps, a few of its inputs for the logged signature): the VAE's
    decoder, or the GAN's generator."""
    from cloakflow.models.gan import Gan, noise_inputs

    if isinstance(synthesizer, Gan):
        cfg = synthesizer.config
        return synthesizer.generator, noise_inputs(
            cfg, np.random.default_rng(0), len(conditions),
            None if cfg.condition is None else conditions)
    return synthesizer.decoder, _decoder_sample(synthesizer, conditions)


def _decoder_sample(vae, conditions: np.ndarray) -> list[np.ndarray] | np.ndarray:
    """A few decoder inputs (latent draws and condition one-hots) for the logged signature."""
    cfg = vae.config
    z = np.random.default_rng(0).standard_normal((len(conditions), cfg.latent_size))
    if cfg.condition is None:
        return z.astype(np.float32)
    k = cfg.output_heads[cfg.condition].width
    return [z.astype(np.float32), np.eye(k, dtype=np.float32)[conditions]]


def _folder_documents(parent: str, report: str, plots: dict[str, bytes], manifest: dict,
                      frame) -> tuple[dict, str]:
    """The release folder's report, plots and README: the report and plots only where the
    manifest may hold private-row figures (not under a DP release's private report)."""
    from cloakflow.tasks.release.publish import folder_readme

    dp = manifest.get("dp")
    private = bool(dp) and dp.get("report") == "private"
    documents = {} if private else {"report.md": report, **plots}
    described = {} if private else {
        "report.md": "the data owner's report: fidelity, TSTR, privacy measurements, verdict",
        "columns.png": "each column's distribution, training rows against synthetic rows",
        "associations.png": "pairwise associations, training rows against synthetic rows"}
    elsewhere = (f"The report and its plots are computed on the private training and control "
                 f"rows, which this DP release's guarantee does not cover (`--dp-report "
                 f"private`): they stay in MLflow run `{parent}` (artifacts `report/`).")
    rows = (f"Rows: {frame.height} synthetic rows drawn from the model; no row is a source "
            "row.")
    readme = folder_readme(f"Synthetic release `{parent}` of `{manifest['dataset']}`",
                           {"synthetic": frame}, {k: described[k] for k in documents},
                           manifest["privacy"]["statement"], manifest["privacy"].get("verdict"),
                           elsewhere if private else None, manifest["privacy"].get("policy"),
                           rows, dp=bool(dp))
    return documents, readme


def _log_report(run: ReleaseRun, report: str) -> dict[str, bytes]:
    """The report JSON, markdown and plots to the MLflow run and the Prefect flow run; returns
    the plots (file name -> PNG bytes) for the release folder."""
    parent, evaluation, gate = run.parent, run.evaluation, run.state["gate"]
    columns = [c for c in run.data.train_frame.columns if c in run.data.pre.modelled()]
    with tracking.scratch_dir() as tmp:
        paths = syn.plot_columns(run.data.train_frame.select(columns), run.release,
                                 f"{tmp}/columns.png")
        heat, mean_diff = syn.plot_associations(
            run.data.train_frame.select(columns), run.release, f"{tmp}/associations.png",
            categorical=syn.exact_discrete(run.data.pre))
        plots = {}
        for path in (paths, heat):
            tracking.log_file(parent, path, "report")
            plots[Path(path).name] = Path(path).read_bytes()
    if "skipped" not in evaluation["fidelity"]:
        evaluation["fidelity"]["association_difference_mean"] = mean_diff
    tracking.log_dict(parent, {"evaluation": evaluation, "gate": gate}, "report/report.json")
    tracking.log_text(parent, report, "report/report.md")
    tracking.log_metrics(parent, syn.report_metrics(evaluation, gate))
    run.steps.markdown("synthetic-report", run.profile.name, report, "Synthetic release report")
    return plots


SYNTHETIC = ReleaseKind(
    name="synthetic", command="cloakflow synthesize",
    flow="cloakflow.flows.synthesize:synthesize",
    parameters="cloakflow.flows.parameters:SynthesizeParameters",
    evaluations=("fidelity", "tstr", "constraints"),
    attacks=("dcr", "exact_copies", "membership", "anonymeter"),
    statement=SYNTHETIC_STATEMENT, label_in_clear=False, min_control_fraction=0.05,
    holder_release="synthetic release from the global model",
    holder_note="A holder's synthetic release draws its labels from its DP label counts.",
    stages=SyntheticStages(), run_name="synthesize", limits=SyntheticLimits)
