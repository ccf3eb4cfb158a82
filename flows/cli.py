"""Command line: ``cloakflow run [DATASET] [options]``.

Runs the anonymisation flow, prints the utility table and, as its last line, the release folder.
Bad input exits with status 2 and a report naming the file, column and rule.
"""

from __future__ import annotations

import argparse
import os
import sys

from cloakflow.tasks import runtime

# defaults (never overriding the user's) and quiet TensorFlow start-up, before any heavy import
runtime.prepare_cli()

EXIT_BAD_INPUT = 2
EXIT_POLICY = 3


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="cloakflow", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="encode a table, evaluate it and publish the release")
    run.add_argument("dataset", nargs="?", default="bank-marketing",
                     help="profile name (default: bank-marketing)")
    run.add_argument("--input", dest="input_path", help="table to read (CSV or Parquet)")
    run.add_argument("--profile", dest="profile_path", help="profile YAML to use")
    run.add_argument("--epochs", type=int, default=100, help="most epochs per autoencoder")
    run.add_argument("--batch-size", type=int, default=256)
    run.add_argument("--validation", choices=["random", "tail"], default="random",
                     help="autoencoder validation rows: random 30%% (default) or the last 30%% "
                          "of the file, as the tutorial's Keras validation_split")
    run.add_argument("--folds", type=int, default=10, help="cross-validation folds")
    run.add_argument("--fold-scheme", choices=["stratified-shuffled", "tutorial"],
                     default="stratified-shuffled",
                     help="tutorial = unshuffled folds, as the tutorial's cross_validate(cv=k)")
    run.add_argument("--forest", choices=["lightgbm", "sklearn"], default="lightgbm",
                     help="evaluation forest engine")
    run.add_argument("--control-fraction", type=float, default=0.1,
                     help="share of rows held out of training and release (default 0.1)")
    run.add_argument("--importance-rows", type=int, default=10_000)
    run.add_argument("--no-cache", dest="use_cache", action="store_false",
                     help="recompute every step instead of reusing an identical earlier run's")
    run.add_argument("--seed", type=int, default=42)
    run.add_argument("--out", default="releases", help="release folder (default: releases/)")
    run.add_argument("--noise", dest="noise_multiplier", type=float,
                     help="noise sd on each released code coordinate, in units of the clip norm "
                          "(default: the profile's privacy.noise.multiplier)")
    run.add_argument("--clip-norm", type=float,
                     help="L2 bound per code vector (default: the profile's, or the median norm)")
    run.add_argument("--skip-attacks", dest="privacy_attacks", action="store_false",
                     help="skip the attack step (the release then needs --accept-risk)")
    run.add_argument("--accept-risk", metavar="REASON",
                     help="publish even when the privacy policy is crossed; the reason, limits "
                          "and measured values go into the manifest")
    run.add_argument("--dp-epsilon", type=float, metavar="E",
                     help="train every autoencoder with DP-SGD; E is the total epsilon of the "
                          "release, all models together")
    run.add_argument("--dp-delta", type=float, metavar="D",
                     help="delta of the release (default: a power of ten at or below 1/(10 n))")
    run.add_argument("--dp-clip", type=float, metavar="C",
                     help="per-model per-example gradient clip norm (default 0.1, chosen on the "
                          "public bank table)")
    run.add_argument("--dp-epochs", type=int, default=30,
                     help="DP-SGD epochs; fixed, no early stopping (default 30)")
    run.add_argument("--dp-design", choices=["joint", "split"], default="split",
                     help="split (default): one DP-SGD mechanism per model, the budget split "
                          "between them; joint: all models one mechanism")
    run.add_argument("--dp-report", choices=["private", "full"], default="private",
                     help="private (default): the release holds only DP-covered figures, the "
                          "utility and attack reports stay in MLflow; full: all in the "
                          "manifest, marked not covered")

    fr = sub.add_parser("frontier", help="sweep code-noise scales: utility vs inversion")
    fr.add_argument("dataset", nargs="?", default="bank-marketing")
    fr.add_argument("--input", dest="input_path")
    fr.add_argument("--profile", dest="profile_path")
    fr.add_argument("--noise", dest="multipliers", default="0,0.05,0.1,0.2,0.5,1,2",
                    help="comma-separated noise multipliers (default: 0,0.05,0.1,0.2,0.5,1,2)")
    fr.add_argument("--clip-norm", type=float, help="L2 bound per code vector (default: median)")
    fr.add_argument("--epochs", type=int, default=100)
    fr.add_argument("--batch-size", type=int, default=256)
    fr.add_argument("--folds", type=int, default=5)
    fr.add_argument("--forest", choices=["lightgbm", "sklearn"], default="lightgbm")
    fr.add_argument("--control-fraction", type=float, default=0.1)
    fr.add_argument("--seed", type=int, default=42)
    fr.add_argument("--out", default="frontier", help="output folder (default: frontier/)")

    bu = sub.add_parser("budget", help="print the privacy ledger of a dataset: every DP run "
                                       "and the total epsilon spent")
    bu.add_argument("dataset", nargs="?", default="bank-marketing")
    bu.add_argument("--profile", dest="profile_path", help="profile YAML (for its dp_cap)")

    at = sub.add_parser("attack", help="rerun the privacy attacks on a published release")
    at.add_argument("release_dir", help="releases/<dataset>/<run id>")
    at.add_argument("--input", dest="input_path", help="the source table, if not found by name")
    at.add_argument("--json", dest="json_out", help="also write the report as JSON here")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in ("run", "frontier"):
        runtime.choose_prefect_api()  # a running local server, else the temporary one
    if args.command == "run":
        return _run(args)
    if args.command == "frontier":
        return _frontier(args)
    if args.command == "attack":
        return _attack(args)
    if args.command == "budget":
        return _budget(args)
    return 1  # pragma: no cover - argparse enforces the sub-command


def _run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from cloakflow.flows.anonymize import RunParameters, anonymize
    from cloakflow.tasks.dp import DpPlanError
    from cloakflow.tasks.ingest import IngestError
    from cloakflow.tasks.ledger import BudgetExhausted
    from cloakflow.tasks.locate import DataNotFoundError
    from cloakflow.tasks.preprocess import PreprocessError
    from cloakflow.tasks.privacy import PolicyViolation
    from cloakflow.tasks.profile import ProfileError
    from cloakflow.tasks.validate import DataValidationError

    try:
        params = RunParameters(**{k: v for k, v in vars(args).items() if k != "command"})
    except ValidationError as exc:
        lines = [f"  --{'-'.join(str(e['loc'][0]).split('_'))}: {e['msg']} (got {e['input']!r})"
                 for e in exc.errors()]
        print("invalid options, nothing was run:\n" + "\n".join(lines), file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        outcome = anonymize(params)
    except DpPlanError as exc:
        print(f"\nDP PLAN REJECTED, nothing was trained or published.\n{exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (DataValidationError, IngestError, PreprocessError, ProfileError,
            DataNotFoundError) as exc:
        print(f"\nINPUT REJECTED, nothing was published.\n{exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except PolicyViolation as exc:
        print(f"\nRELEASE BLOCKED by the privacy policy, nothing was published.\n{exc}\n"
              "Add noise (--noise, or privacy.noise in the profile; `cloakflow frontier` shows "
              "the trade-off) or publish anyway with --accept-risk \"reason\".",
              file=sys.stderr)
        return EXIT_POLICY
    except BudgetExhausted as exc:
        print(f"\nRUN REFUSED by the dataset's privacy budget, nothing was trained or "
              f"published.\n{exc}\n`cloakflow budget {exc.dataset}"
              f"{' --profile ' + params.profile_path if params.profile_path else ''}` lists "
              "what was spent.", file=sys.stderr)
        return EXIT_POLICY
    print(f"\nUtility ({params.folds}-fold {params.fold_scheme}, forest {params.forest}):")
    print(outcome.table_markdown)
    print(f"MLflow run: {outcome.mlflow_run_id}")
    print(outcome.release)
    return 0


def _budget(args: argparse.Namespace) -> int:
    from cloakflow.tasks import ledger, tracking
    from cloakflow.tasks.profile import ProfileError, load_profile

    try:
        profile = load_profile(args.profile_path or args.dataset)
        name, cap = profile.name, profile.privacy.dp_cap
    except ProfileError as exc:
        if args.profile_path:
            print(f"cannot read the profile: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        name, cap = args.dataset, None  # a dataset whose profile is elsewhere: no cap known
    # read-only: a missing local MLflow store is not created just to be found empty
    mirror = bool(os.environ.get("MLFLOW_TRACKING_URI")) or os.path.isfile("mlflow.db")
    if mirror:
        tracking.configure()
    print(ledger.summary(name, cap.model_dump() if cap else None, include_mlflow=mirror))
    if not mirror:
        print("(no MLflow store here: only the ledger file was read; run from the folder "
              "holding mlflow.db or set MLFLOW_TRACKING_URI to include its mirror)")
    return 0


def _frontier(args: argparse.Namespace) -> int:
    from cloakflow.flows.frontier import FrontierParameters, frontier

    values = {k: v for k, v in vars(args).items() if k != "command" and v is not None}
    values["multipliers"] = [float(v) for v in args.multipliers.split(",") if v.strip()]
    result = frontier(FrontierParameters(**values))
    print(result["folder"])
    return 0


def _attack(args: argparse.Namespace) -> int:
    import json

    from cloakflow.flows.attack import ReleaseMismatch, attack_published, summary_markdown
    from cloakflow.tasks.locate import DataNotFoundError

    try:
        report = attack_published(args.release_dir, args.input_path)
    except (ReleaseMismatch, DataNotFoundError) as exc:
        print(f"cannot attack {args.release_dir}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(summary_markdown(report))
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(report, fh, indent=1)
    return EXIT_POLICY if report["policy"]["crossed"] else 0


if __name__ == "__main__":
    sys.exit(main())
