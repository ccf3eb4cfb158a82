"""The synthetic-release flow: ingest -> validate -> split -> preprocess -> (DP histogram) ->
VAE (plain or DP-SGD) -> sample rows -> evaluate and attack against the control rows -> policy
gate -> publish ``synthetic.parquet`` with its manifest, every step logged to one MLflow run.

Orchestration only: the model is ``models/vae.py``, the release's evaluation and gate
``tasks/release/synthetic.py``, the DP plan ``tasks/privacy/dp_synthetic.py``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json
from pathlib import Path

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from cloakflow.flows.parameters import SynthesizeParameters
from cloakflow.tasks import steps, tracking
from cloakflow.tasks.data import constraints
from cloakflow.tasks.data.preprocess import DISCRETE_LEVELS, TablePreprocessor
from cloakflow.tasks.data.profile import load_profile
from cloakflow.tasks.data.steps import prepare
from cloakflow.tasks.privacy.policy import PolicyViolation
from cloakflow.tasks.release import synthetic as syn


class SynthesisOutcome(BaseModel):
    """What a synthesize run returns: the release folder and the report."""

    release: str
    mlflow_run_id: str
    report_markdown: str
    verdict: str


@task(name="train-vae", cache_policy=NO_CACHE)
def train_vae_task(x: np.ndarray, config, seed: int, parent: str, plan=None,
                   expected_batch: float | None = None):
    """Prefect task: train the VAE (plain, or DP-SGD with ``plan``), printing each epoch and
    logging the loss (mean negative ELBO per row, nats) to the MLflow run."""
    from cloakflow.models.vae import train_vae

    total = plan.epochs if plan is not None else config.epochs

    def on_epoch(epoch: int, metrics: dict) -> None:
        print(f"VAE epoch {epoch}/{total}: loss {metrics['loss']:.4f}"
              + (f", clipped {metrics['clipped']:.2f}" if plan is not None else ""), flush=True)
        tracking.log_metrics(parent, {"vae.loss": metrics["loss"]}, step=epoch)

    if plan is None:
        return train_vae(x, config, seed=seed, on_epoch=on_epoch)
    return train_vae(x, config, budget=plan.sgd, clip_norm=plan.clip_norm,
                     on_epoch=on_epoch, expected_batch=expected_batch)


@task(name="evaluate-synthetic", cache_policy=NO_CACHE)
def evaluate_task(**kwargs) -> dict:
    """Prefect task: ``tasks.release.synthetic.evaluate``."""
    return syn.evaluate(**kwargs)


@flow(name="synthesize", log_prints=True)
def synthesize(params: SynthesizeParameters | None = None) -> SynthesisOutcome:
    """Train a generator on a sensitive table, sample synthetic rows, measure their fidelity,
    utility and privacy against held-out rows, gate them on the profile's policy and publish."""
    from prefect.runtime import flow_run

    from cloakflow.models.training.dp_counts import noisy_counts, shares
    from cloakflow.models.vae import VaeConfig
    from cloakflow.tasks.privacy import dp_synthetic as dps
    from cloakflow.tasks.release.manifest import Source
    from cloakflow.tasks.release.publish import write_release

    params = params or SynthesizeParameters()
    if params.models_from is not None:  # a holder's release: the federation's split
        from cloakflow.tasks.training.federation import adopt_federation_split

        params = adopt_federation_split(params)
    profile = load_profile(params.profile_path or params.dataset)
    params = params.model_copy(update={"dataset": profile.name})
    private = params.dp_epsilon is not None
    federated = params.models_from is not None  # a holder samples from a federation's VAE
    tracking.configure()
    flow_run_id, timings = str(flow_run.id or "none"), tracking.Timings()
    with tracking.parent_run(profile.name, f"synthesize-{profile.name}", {
            "prefect.flow_run_id": flow_run_id, "cloakflow.dataset": profile.name,
            "cloakflow.kind": "synthetic"}, params.model_dump()) as parent:
        # a federation's holder encodes with the shared schema and splits as its worker did
        data = prepare(profile, params.input_path, params.control_fraction, params.seed,
                       parent, timings, public_bounds=private or federated, numeric="quantile",
                       options={"with_target": True, "missing_state": True,
                                "discrete_levels": DISCRETE_LEVELS,
                                "bound_state": params.bound_states and not private
                                and not federated},
                       secret_split=private)
        pre, source = data.pre, data.source_name
        cond = syn.parse_condition(params.condition, pre, source)
        # the model's view: the source rows, or with constraints their transform
        rules = constraints.ConstraintSet(profile, constraints.kinds_from(pre), private)
        train_m = data.train_frame
        mpre, x_model, cond_m = pre, data.x, cond
        if rules:
            rules.fit(data.train_frame).valid(data.train_frame)  # a bad formula fails here
            train_m = rules.encode(data.train_frame)
            mpre = TablePreprocessor(rules.model_profile(), public_bounds=pre.public_bounds,
                                     numeric=pre.numeric, with_target=pre.with_target,
                                     missing_state=pre.missing_state,
                                     discrete_levels=pre.discrete_levels,
                                     bound_state=pre.bound_state).fit(train_m, source)
            x_model = mpre.transform(train_m, source)
            cond_m = syn.parse_condition(params.condition, mpre, source)
            print("constraints: " + "; ".join(f"{c.describe()} ({rules.kept_by(c)})"
                                              for c in rules.rules), flush=True)
        counts = cond_m.counts(x_model, mpre)
        dp_release = None
        plan = None
        federation = None
        if federated:
            if rules:
                raise constraints.ConstraintError(
                    f"{source}: constraints with --models-from: a federation's VAE models the "
                    "shared schema without them; remove the profile's constraints")
            vae, federation, label_shares, estimate, dp_release = _federated_vae(
                params, pre, cond, counts, source, data.source_sha)
        elif private:
            dps.require_public_bounds(mpre.specs, source, rules.model_profile() if rules
                                      else profile)  # before the (slow) plan
            plan = dps.plan_synthesis_dp(params.dp_epsilon, params.dp_delta, params.dp_clip,
                                         params.dp_epochs, params.dp_sampling_rate,
                                         dps.knot_columns(mpre.specs),
                                         dps.knot_levels(mpre.specs))
            from cloakflow.tasks.privacy.ledger import spend_for_run

            # spent before any DP mechanism reads the rows (the section is filled in after
            # the knots: only the column lists change)
            dp_release = dps.dp_section(plan, mpre.bounds_used(), params.dp_report)
            spend_for_run(profile, parent, data.source_sha, data.source_rows, len(data.x),
                          dp_release)
            noisy = noisy_counts(counts, plan.histogram_sigma)
            label_shares, estimate = shares(noisy), max(1.0, float(noisy.sum()))
            if plan.knot_columns:
                knots, values, info = dps.dp_quantile_knots(train_m, mpre, plan, estimate)
                mpre = dps.refit_with_knots(mpre, train_m, knots, values, source)
                x_model = mpre.transform(train_m, source)
                if not rules:  # one preprocessor: the evaluation reads the knotted one too
                    pre = data.pre = mpre
                    data.x = x_model
                    data.x_control = pre.transform(data.control_frame, source,
                                                   unseen="ignore")
                tracking.log_text(parent, mpre.to_json(), "preprocessing/state.json")
                dp_release = dps.dp_section(plan, mpre.bounds_used(), params.dp_report, info)
        else:
            label_shares, estimate = counts / counts.sum(), float(len(x_model))
        rows = params.rows or int(round(estimate))
        if federated:  # nothing trains here: the federation's global VAE samples
            result = _FederatedVae(vae, federation)
            config = vae.config
        else:
            config = VaeConfig(heads=mpre.heads(), condition=cond_m.index, latent=params.latent,
                               epochs=params.epochs, batch_size=params.batch_size,
                               **({"learning_rate": dps.DP_LEARNING_RATE} if private else {}))
            with timings("train"):
                result = train_vae_task(x_model, config, params.seed, parent, plan,
                                        params.dp_sampling_rate * estimate if private else None)
        with timings("sample"):
            rng = np.random.default_rng([params.seed, 1])
            columns = [c for c in data.train_frame.columns if c in pre.modelled()]
            if rules:
                def draw(n: int):
                    x = result.vae.sample(n, rng, syn.draw_conditions(n, cond_m, label_shares,
                                                                      rng))
                    syn.keep_condition(x, mpre, cond_m)
                    return rules.decode(mpre.reverse_transform(x)).select(columns)

                frame, rejection = constraints.sample_valid(draw, rows, rules)
                x_syn = pre.transform(frame, source, unseen="ignore")
                conditions = syn.draw_conditions(5, cond_m, label_shares, rng)
                if rejection["rejected"]:
                    print(f"constraints: {rejection['rejected']} of {rejection['drawn']} drawn "
                          f"rows rejected ({100 * rejection['rate']:.1f}%)", flush=True)
            else:
                conditions = syn.draw_conditions(rows, cond, label_shares, rng)
                x_syn = result.vae.sample(rows, rng, conditions)
                syn.keep_condition(x_syn, pre, cond)
                frame = pre.reverse_transform(x_syn).select(columns)
            print(f"sampled {rows} synthetic rows", flush=True)
        with timings("evaluate"):
            evaluation = evaluate_task(
                pre=pre, profile=profile, x_syn=x_syn, x_train=data.x,
                x_control=data.x_control, synthetic=frame, train=data.train_frame,
                control=data.control_frame, seed=params.seed,
                attacks=params.privacy_attacks, condition=cond)
            if rules:
                evaluation["constraints"] = rules.report(data.train_frame, frame, rejection)
        gate = syn.judge(evaluation, profile, params.privacy_attacks, params.accept_risk)
        report = syn.report_markdown(profile.name, evaluation, gate, rows=rows,
                                     model=params.model, dp=dp_release, condition=cond,
                                     profile_target=profile.target)
        plots = _log_report(parent, profile.name, evaluation, gate, report,
                            data.train_frame.select(columns), frame, syn.exact_discrete(pre))
        if gate["verdict"] == "blocked":
            tracking.log_metrics(parent, {f"time.{k}": v for k, v in timings.items()})
            raise PolicyViolation(gate["crossed"], report)
        with timings("publish"):
            tracking.log_text(parent, json.dumps(config.to_dict(), default=str),
                              "model/vae_config.json")
            tracking.log_keras_model(parent, result.vae.decoder, _decoder_sample(
                result.vae, conditions[:5]), name="vae_decoder")
            manifest = syn.manifest(
                profile=profile, params=_published_params(params), source=Source(
                    file=source, sha256=None if dp_release else data.source_sha),
                parent=parent, flow_run_id=flow_run_id, rows=rows, frame=frame, config=config,
                train_log=result.log, training_rows=len(data.x),
                control_rows=len(data.x_control), condition=cond, evaluation=evaluation,
                gate=gate, dp=dp_release,
                nullable={s.missing_of for s in pre.specs
                          if s.missing_of and s.companion == "missing"},
                federation=federation, duplicates=data.duplicates.to_dict())
            documents, readme = _folder_documents(parent, report, plots, manifest, frame)
            folder = str(write_release(params.out, profile.name, parent, {"synthetic": frame},
                                       manifest, documents, readme))
            tracking.log_dict(parent, manifest, "release/manifest.json")
            print(f"published {folder}", flush=True)
            steps.markdown("synthetic-release", profile.name,
                               f"# Release `{folder}`\n\n{report}", "Published synthetic rows")
        tracking.finish_parent(parent, folder, timings)
    get_run_logger().info("release folder: %s", folder)
    return SynthesisOutcome(release=folder, mlflow_run_id=parent, report_markdown=report,
                            verdict=gate["verdict"])


# what a holder's release from a federation's VAE does not use: nothing trains there
TRAINING_PARAMS = ("epochs", "batch_size", "latent", "dp_epsilon", "dp_delta", "dp_clip",
                   "dp_epochs", "dp_sampling_rate")


def _published_params(params: SynthesizeParameters) -> dict:
    """The manifest's parameters: without the training ones when a federation's VAE samples
    (its settings are the federation manifest's)."""
    out = params.model_dump()
    if params.models_from is not None:
        out = {k: v for k, v in out.items() if k not in TRAINING_PARAMS}
    return out


class _FederatedVae:
    """A federation's global VAE where the flow expects a training result: its log holds the
    federation's epochs (rounds × local epochs) and no loss (the holders' losses are in the
    federation's MLflow run)."""

    def __init__(self, vae, federation: dict):
        from cloakflow.models.training.trainer import TrainLog

        self.vae = vae
        self.log = TrainLog(None, float("inf"))
        self.log.epochs_run = federation["epochs"]
        self.log.seconds = 0.0


def _federated_vae(params: SynthesizeParameters, pre, cond, counts: np.ndarray, source: str,
                   source_sha: str | None = None):
    """The global VAE of ``params.models_from`` for this holder, the label shares its rows are
    drawn with and the default row count: under the federation's DP, its DP condition counts
    (covered by its epsilon), else its own training rows; and the release's DP section (the
    holder's, from the federation) or None.

    Raises:
        FederationMismatch: see ``tasks.training.federation.federation_for``; or a condition
            on another column than the one the global VAE was conditioned on.
    """
    from cloakflow.models.training.dp_counts import shares
    from cloakflow.tasks.training.federation import FederationMismatch, vae_from_federation

    vae, federation, entry = vae_from_federation(params.models_from, params.holder, pre,
                                                 params.seed, params.control_fraction,
                                                 source_sha)
    if vae.config.condition != cond.index:
        raise FederationMismatch(
            f"{source}: --condition {params.condition}: the federation's VAE is conditioned on "
            f"{pre.specs[vae.config.condition].name!r}; condition on that column or none")
    settings = json.loads((Path(params.models_from) / "manifest.json").read_text())["settings"]
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
                           rows)
    return documents, readme


def _log_report(parent: str, dataset: str, evaluation: dict, gate: dict, report: str,
                train, frame, discrete: tuple[str, ...]) -> dict[str, bytes]:
    """The report JSON, markdown and plots to the MLflow run and the Prefect flow run; returns
    the plots (file name -> PNG bytes) for the release folder."""
    from pathlib import Path

    with tracking.scratch_dir() as tmp:
        columns = syn.plot_columns(train, frame, f"{tmp}/columns.png")
        heat, mean_diff = syn.plot_associations(train, frame, f"{tmp}/associations.png",
                                                categorical=discrete)
        plots = {}
        for path in (columns, heat):
            tracking.log_file(parent, path, "report")
            plots[Path(path).name] = Path(path).read_bytes()
    if "skipped" not in evaluation["fidelity"]:
        evaluation["fidelity"]["association_difference_mean"] = mean_diff
    tracking.log_dict(parent, {"evaluation": evaluation, "gate": gate}, "report/report.json")
    tracking.log_text(parent, report, "report/report.md")
    fid, ts = evaluation["fidelity"], evaluation["tstr"]
    metrics = {f"fidelity.{k}": fid[k]["synthetic"] for k in ("univariate", "bivariate",
                                                              "three_way") if k in fid}
    if "quality" in fid:
        for part, prefix in (("synthetic", "fidelity.quality"),
                             ("release", "fidelity.quality.release")):
            metrics.update({f"{prefix}.{k}": v for k, v in fid["quality"].get(part, {}).items()
                            if k in ("score", "column_shapes", "column_pair_trends")
                            and v is not None})
    metrics.update({f"tstr.{k}": ts[k]["tstr"] for k in ("forest", "lightgbm") if k in ts})
    metrics.update({f"privacy.{k}": v for k, v in gate["measured"].items() if v is not None})
    tracking.log_metrics(parent, metrics)
    steps.markdown("synthetic-report", dataset, report, "Synthetic release report")
    return plots


__all__ = ["synthesize", "SynthesizeParameters", "SynthesisOutcome"]
