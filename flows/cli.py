"""Command line: ``cloakflow run [DATASET] [options]``, ``cloakflow synthesize [DATASET]``,
``cloakflow desensitize [DATASET] --sensitive A,B``, ``cloakflow mask [DATASET]``.

Runs a release flow, prints its results and, as its last line, the release folder.
Bad input exits with status 2 and a report naming the file, column and rule. Ctrl-C or SIGTERM
stops a ``run`` or ``synthesize`` within seconds, nothing published, with status 130 or 143
(``engine.StopOnSignals``).
"""

from __future__ import annotations

import argparse
import os
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel

from cloakflow.tasks import runtime

# defaults (never overriding the user's) and quiet TensorFlow start-up, before any heavy import
runtime.prepare_cli()

from cloakflow.flows import engine  # noqa: E402 - after the defaults: it reads no settings

EXIT_BAD_INPUT = 2
EXIT_POLICY = 3


# Flags whose name is not the field's (``--input`` for ``input_path``), booleans exposed as a
# negative switch, and the one positional argument. Everything else (type, default, choices,
# help) is read from the flow's parameter model, so defaults live in one place.
FLAG_NAMES = {"input_path": "--input", "profile_path": "--profile",
              "noise_multiplier": "--noise", "multipliers": "--noise"}
SWITCHES = {"use_cache": ("--no-cache", "recompute every step instead of reusing an identical "
                                        "earlier run's"),
            "privacy_attacks": ("--skip-attacks", "skip the attack step (the release then "
                                                  "needs --accept-risk)"),
            "release": ("--no-release", "train only: no holder encodes its rows and publishes "
                                        "a release")}
POSITIONAL = "dataset"


def add_model_options(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    """One option per field of ``model`` (a pydantic parameter model): ``--field-name`` with
    the field's type, choices (``Literal``), description and default. Unset options are not
    passed on, so the model's defaults apply."""
    for name, field in model.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        help_ = (field.description or "").replace("%", "%%")
        if name == POSITIONAL:
            parser.add_argument(name, nargs="?", default=argparse.SUPPRESS,
                                help=f"profile name (default: {default})")
            continue
        if name in SWITCHES:
            flag, text = SWITCHES[name]
            parser.add_argument(flag, dest=name, action="store_false",
                                default=argparse.SUPPRESS, help=text)
            continue
        if field.annotation is bool and default is False:  # an opt-in switch
            parser.add_argument(_flag(name), dest=name, action="store_true",
                                default=argparse.SUPPRESS, help=help_)
            continue
        kind, choices = _option_type(field.annotation)
        parser.add_argument(_flag(name), dest=name,
                            type=kind, choices=choices, default=argparse.SUPPRESS,
                            help=help_ if default is None
                            else f"{help_} (default: {shown})".strip())


def _option_type(annotation):
    """(argparse type, choices) of a field annotation: int, float, str, a Literal, a list of
    floats or strings (comma-separated), optionally ``| None``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if typing.get_origin(annotation) is typing.Literal:
        return str, list(typing.get_args(annotation))
    if typing.get_origin(annotation) is list:
        item = (typing.get_args(annotation) or (float,))[0]
        return (lambda text: [item(v.strip()) for v in text.split(",") if v.strip()]), None
    if annotation in (int, float, str):
        return annotation, None
    raise TypeError(f"no command-line form for a parameter of type {annotation!r}")


@dataclass(frozen=True)
class Command:
    """One sub-command: its help, the function that runs it (parsed options -> exit status),
    and its options: the fields of a parameter model of ``flows/parameters.py`` (``model``),
    or its own (``arguments``)."""

    help: str
    run: Callable[[argparse.Namespace], int]
    model: str | None = None
    arguments: Callable[[argparse.ArgumentParser], None] | None = None


def _parser() -> argparse.ArgumentParser:
    from cloakflow.flows import parameters

    ap = argparse.ArgumentParser(prog="cloakflow", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        parser = sub.add_parser(name, help=command.help)
        if command.model is not None:
            add_model_options(parser, getattr(parameters, command.model))
            parser.add_argument("--verbose", action="store_true",
                                help="show every log line of the run (each epoch, each "
                                     "check, Prefect's task states) and the whole report; by "
                                     "default one line per step")
        else:
            command.arguments(parser)
    return ap


def _budget_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", nargs="?", default="bank-marketing")
    parser.add_argument("--profile", dest="profile_path", help="profile YAML (for its dp_cap)")


def _profile_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", help="a CSV or Parquet file")
    parser.add_argument("--out", help="write the draft here (default: print it)")
    parser.add_argument("--name", help="dataset name (default: from the file name)")
    parser.add_argument("--separator", help="CSV separator (default: sniffed)")
    parser.add_argument("--encoding", help="CSV text encoding, e.g. cp1252 (default: UTF-8 if "
                                           "the file decodes as UTF-8, else cp1252, noted in "
                                           "the draft)")


def _attack_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("release_dir", help="releases/<dataset>/<run id>")
    parser.add_argument("--input", dest="input_path",
                        help="the source table, if not found by name")
    parser.add_argument("--json", dest="json_out", help="also write the report as JSON here")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return COMMANDS[args.command].run(args)


def _run(args: argparse.Namespace) -> int:
    from cloakflow.flows.parameters import RunParameters

    ran = _release_run(args, RunParameters, "anonymize",
                       "Add noise (--noise, or privacy.noise in the profile; `cloakflow "
                       "frontier` shows the trade-off) ")
    if isinstance(ran, int):
        return ran
    params, outcome = ran
    if args.verbose:
        print(f"\nUtility ({params.folds}-fold {params.fold_scheme}, forest {params.forest}):")
        print(outcome.table_markdown)
    _finish(args, outcome, "privacy-report.md", "utility.md")
    return 0


def _report_release(model: str, flow: str, remedy) -> Callable[[argparse.Namespace], int]:
    """The command of a release kind whose outcome carries one ``report.md``: its flow
    ``cloakflow.flows.<flow>`` with the parameters ``model`` (a class of
    ``flows/parameters.py``); ``remedy``: the way to fewer risks a blocked run is told (text,
    or a function of the limits crossed)."""

    def command(args: argparse.Namespace) -> int:
        from cloakflow.flows import parameters

        ran = _release_run(args, getattr(parameters, model), flow, remedy)
        if isinstance(ran, int):
            return ran
        _, outcome = ran
        if args.verbose:
            print("\n" + outcome.report_markdown)
        _finish(args, outcome, "report.md")
        return 0

    return command


_synthesize = _report_release("SynthesizeParameters", "synthesize",
                              "Train with DP (--dp-epsilon), fewer epochs or more rows, ")
_desensitize = _report_release("DesensitizeParameters", "desensitize",
                               "Raise the distortion budget (--distortion) or train longer "
                               "(--epochs), ")
def _mask_remedy(crossed: list[str]) -> str:
    """A blocked masked release's way forward, by the limit it crossed."""
    if any("max_reidentification" in c for c in crossed):
        return ("Mask the quasi-identifiers themselves (--columns, by default the profile's "
                "quasi_identifiers), or more rows (--rows all), ")
    return ("Read the report's regenerated cells (a column whose true value the rest of the "
            "row gives away cannot be hidden by redrawing it: mask the columns that give it "
            "away too), ")


_mask = _report_release("MaskParameters", "mask", _mask_remedy)


def _finish(args: argparse.Namespace, outcome, *reports: str) -> None:
    """The last lines of a published release: where its report is, its MLflow run and, last,
    the release folder."""
    from pathlib import Path

    if not args.verbose:
        found = [str(Path(outcome.release) / r) for r in reports
                 if (Path(outcome.release) / r).is_file()]
        if found:
            print(f"report: {', '.join(found)} (--verbose prints it here)")
    print(f"MLflow run: {outcome.mlflow_run_id}")
    print(outcome.release)


def _release_run(args: argparse.Namespace, model: type[BaseModel], flow: str, remedy: str):
    """Parameters from the options, then the release flow ``cloakflow.flows.<flow>.<flow>``
    with the command line's error handling: ``(params, outcome)``, or an exit status."""
    params = _parameters(model, args)
    if isinstance(params, int):
        return params
    if getattr(params, "models_from", None):  # a holder's release: the federation's split
        from cloakflow.tasks.training.federation import adopt_federation_split

        params = adopt_federation_split(params)

    def call():
        import importlib

        # the task runner is chosen for this run (the decorator's is a deployment's default)
        return engine.for_run(getattr(importlib.import_module(f"cloakflow.flows.{flow}"),
                                      flow))(params)

    with engine.StopOnSignals():  # Ctrl-C, SIGTERM: stopped within seconds, exit 130 / 143
        outcome = _execute(params, call, remedy, args.verbose)
    return outcome if isinstance(outcome, int) else (params, outcome)


def _parameters(model: type[BaseModel], args: argparse.Namespace):
    """The flow's parameter model from the options, or exit status 2 with the errors."""
    from pydantic import ValidationError

    try:
        return model(**_values(args))
    except ValidationError as exc:
        # a rule across options (a model validator) has no field: its message names them
        lines = [f"  {_flag(str(e['loc'][0]))}: {e['msg']} (got {e['input']!r})" if e["loc"]
                 else f"  {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]
        print("invalid options, nothing was run:\n" + "\n".join(lines), file=sys.stderr)
        return EXIT_BAD_INPUT


def _execute(params, call, remedy: str, verbose: bool):
    """Run a release flow (``call``) with the command line's error handling: the flow's
    outcome, or the exit status after a report on stderr (2: bad input or DP plan, 3: policy
    or budget). The console is quiet unless ``verbose`` (``engine.console``)."""
    from cloakflow.tasks.data.profile import ProfileError, load_profile

    try:  # a broken profile is reported before any server starts
        profile = load_profile(params.profile_path or params.dataset)
        from cloakflow.flows.parameters import ReleaseFields

        if isinstance(params, ReleaseFields):  # a release: its policy and options are read
            from cloakflow.tasks.release.kinds import check_options, check_policy

            check_policy(profile, params.profile_path)
            check_options(params, profile, params.profile_path)
    except (ProfileError, *_option_refusals()) as exc:
        print(f"\nINPUT REJECTED, nothing was run.\n{exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    engine.console(verbose)
    engine.choose_prefect_api()  # a running local server, else the temporary one
    from cloakflow.tasks.runners import StopRequested

    refusals = _refusals()
    runtime.quiet_expected_errors((*refusals, StopRequested))
    try:
        return call()
    except refusals as exc:  # each carries its exit status and headline
        print(f"\n{exc.headline}\n{exc}{_advice(exc, params, remedy)}", file=sys.stderr)
        return exc.exit_code


def _option_refusals() -> tuple[type[Exception], ...]:
    """The refusals of a kind's options checked against the profile before anything runs."""
    from cloakflow.tasks.release.desensitized import DesensitizeError
    from cloakflow.tasks.release.masked import MaskError

    return DesensitizeError, MaskError


def _refusals() -> tuple[type[Exception], ...]:
    """The errors a run ends with on purpose (bad input, a DP plan, the policy, the budget, a
    federation), each with its ``exit_code`` and ``headline``."""
    from cloakflow.federated.task import SchemaMismatch
    from cloakflow.tasks.data.constraints import ConstraintError
    from cloakflow.tasks.data.ingest import IngestError
    from cloakflow.tasks.data.locate import DataNotFoundError
    from cloakflow.tasks.data.preprocess import PreprocessError
    from cloakflow.tasks.data.profile import ProfileError
    from cloakflow.tasks.data.split import TargetError
    from cloakflow.tasks.data.validate import DataValidationError
    from cloakflow.tasks.federation import FederationFailed
    from cloakflow.tasks.privacy.dp import DpPlanError
    from cloakflow.tasks.privacy.ledger import BudgetExhausted
    from cloakflow.tasks.privacy.policy import PolicyViolation
    from cloakflow.tasks.release.desensitized import DesensitizeError
    from cloakflow.tasks.release.masked import MaskError
    from cloakflow.tasks.training.federation import FederationMismatch

    return (FederationFailed, SchemaMismatch, DpPlanError, DataValidationError, IngestError,
            PreprocessError, ProfileError, DataNotFoundError, TargetError, FederationMismatch,
            ConstraintError, DesensitizeError, MaskError, PolicyViolation, BudgetExhausted)


def _advice(exc: Exception, params, remedy: str) -> str:
    """What to do next, after a blocked release (``remedy``: the command's way to fewer
    risks) or a refused budget; nothing for the other refusals."""
    from cloakflow.tasks.privacy.ledger import BudgetExhausted
    from cloakflow.tasks.privacy.policy import PolicyViolation

    if isinstance(exc, BudgetExhausted):
        return (f"\n`cloakflow budget {exc.dataset}"
                f"{' --profile ' + params.profile_path if params.profile_path else ''}` lists "
                "what was spent.")
    if not isinstance(exc, PolicyViolation):
        return ""
    if getattr(params, "models_from", None):  # nothing trained here: the federation did
        remedy = ("Retrain the federation with DP or a smaller --dp-epsilon, fewer rounds or "
                  "more rows per holder, ")
    if callable(remedy):  # a remedy that depends on the limits crossed
        remedy = remedy(exc.crossed)
    text = ("\n" + ("Run the attacks (drop --skip-attacks) " if not params.privacy_attacks
                    else remedy) + "or publish anyway with --accept-risk \"reason\".")
    if getattr(params, "dp_epsilon", None) is not None:
        text += (f"\nThis DP run already spent epsilon {params.dp_epsilon:g} of the dataset's "
                 "privacy budget (its ledger, `cloakflow budget`): training looked at the "
                 "rows. Rerunning, with --accept-risk or not, spends it again.")
    return text


def _flag(name: str) -> str:
    """The command-line flag of a parameter-model field."""
    if name in SWITCHES:
        return SWITCHES[name][0]
    return FLAG_NAMES.get(name, "--" + name.replace("_", "-"))


def _values(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items() if k not in ("command", "verbose")}


def _budget(args: argparse.Namespace) -> int:
    from cloakflow.tasks import tracking
    from cloakflow.tasks.data.profile import ProfileError, load_profile
    from cloakflow.tasks.privacy import ledger

    try:
        profile = load_profile(args.profile_path or args.dataset.partition("@")[0])
        name, cap = profile.name, profile.privacy.dp_cap
        holder = getattr(args, "dataset", "").partition("@")[2]
        if holder:  # a federated holder's ledger: <profile name>@<holder>, the profile's cap
            name = f"{profile.name}@{holder}"
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


def _profile(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cloakflow.tasks.data.draft import DraftError, draft_profile

    try:
        draft = draft_profile(args.table, name=args.name, separator=args.separator,
                              encoding=args.encoding)
    except DraftError as exc:
        print(f"cannot draft a profile: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.out:
        Path(args.out).write_text(draft.text)
        target = draft.profile.target
        print(f"drafted {args.out} (dataset {draft.profile.name!r}, target "
              f"{target.column if target else 'NOT SET: choose it before running'!r}, "
              f"{len(draft.profile.features)} features in "
              f"{len(draft.profile.groups)} groups); "
              + ("" if target else "set `target:` in it (runs refuse the draft until then), ")
              + f"review it, then: cloakflow run --profile {args.out} --input {args.table}  "
              f"(codes), cloakflow synthesize --profile {args.out} --input {args.table}  "
              f"(synthetic rows), cloakflow desensitize --profile {args.out} --input "
              f"{args.table} --sensitive COLUMN  (real rows without a sensitive column's "
              f"signal), or cloakflow mask --profile {args.out} --input {args.table}  (real "
              "rows, the quasi-identifiers of unique rows regenerated)", file=sys.stderr)
        for note in draft.notes:
            print(f"  - {note}", file=sys.stderr)
    else:
        print(draft.text)
    return 0


def _federate(args: argparse.Namespace) -> int:
    from cloakflow.flows.parameters import FederateParameters

    params = _parameters(FederateParameters, args)
    if isinstance(params, int):
        return params

    def call():
        from cloakflow.flows.federate import federate

        return federate(params)

    outcome = _execute(params, call, "", args.verbose)
    if isinstance(outcome, int):
        return outcome
    for r in outcome.releases:
        print(f"holder {r['holder']}: release {r['verdict']}"
              + (f" -> {r['release']}" if r.get("release") else ""))
    print(f"MLflow run: {outcome.mlflow_run_id}")
    print(outcome.folder)
    return 0


def _frontier(args: argparse.Namespace) -> int:
    from cloakflow.flows.frontier import FrontierParameters, frontier

    params = FrontierParameters(**_values(args))
    engine.console(args.verbose)
    engine.choose_prefect_api()
    result = engine.for_run(frontier)(params)
    print(result["folder"])
    return 0


def _attack(args: argparse.Namespace) -> int:
    import json

    from cloakflow.flows.attack import ReleaseMismatch, attack_published, summary_markdown
    from cloakflow.tasks.data.locate import DataNotFoundError

    try:
        report = attack_published(args.release_dir, args.input_path)
    except (ReleaseMismatch, DataNotFoundError) as exc:
        print(f"cannot attack {args.release_dir}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(summary_markdown(report))
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(report.model_dump(mode="json"), fh, indent=1)
    return EXIT_POLICY if report.policy.crossed else 0


COMMANDS: dict[str, Command] = {
    "run": Command("encode a table, evaluate it and publish the release", _run,
                   "RunParameters"),
    "synthesize": Command("train a generator (a VAE or a GAN, optionally DP end to end), publish "
                          "synthetic rows with their evaluation and privacy report",
                          _synthesize, "SynthesizeParameters"),
    "desensitize": Command("train a privatizer against an adversary and publish the real rows "
                           "with the sensitive columns' signal removed, with what fresh "
                           "attackers still infer", _desensitize, "DesensitizeParameters"),
    "mask": Command("regenerate chosen cells (by default the quasi-identifiers of the rows "
                    "unique on them) with a GAN imputer trained on the other folds, and publish "
                    "the rows with how the cells compare with the truth", _mask,
                    "MaskParameters"),
    "federate": Command("train the codes autoencoders or the VAE across data holders with "
                        "Flower (FedAvg or FedProx; optionally DP-SGD per holder), then each "
                        "holder's own release", _federate, "FederateParameters"),
    "frontier": Command("sweep code-noise scales: utility vs inversion", _frontier,
                        "FrontierParameters"),
    "budget": Command("print the privacy ledger of a dataset: every DP run and the total "
                      "epsilon spent", _budget, arguments=_budget_arguments),
    "profile": Command("draft a profile from a table (kinds, groups, target, identifiers) for "
                       "you to edit", _profile, arguments=_profile_arguments),
    "attack": Command("rerun the privacy attacks on a published release", _attack,
                      arguments=_attack_arguments),
}


if __name__ == "__main__":
    sys.exit(main())
