"""A data holder's warm training service: one long-running process per holder that loads the
holder's table once (ingest, validation, shared-schema encoding), keeps TensorFlow and the
models in memory, and serves the holder's ClientApp over an authenticated loopback socket.

Why: Flower's deployment engine starts a fresh ``flwr-clientapp`` process for every message.
A ClientApp that imported TensorFlow and re-read its table would pay that start-up (tens of
seconds here) every round; the ClientApp (``client_app.py``) therefore imports only Flower and
NumPy and forwards each message here, so a round costs the message passing plus the local
training. The rows never leave this process: only weights, the shared schema's fingerprint and
aggregate figures are returned.

    python -m cloakflow.federated.worker --profile P --input FILE --holder NAME
        --address 127.0.0.1:PORT --key-file FILE [--ready-file FILE]
        [--control-fraction F --seed S]

Requests (``multiprocessing.connection`` with an HMAC key, pickled dicts):
``{"op": "query", "config": {...}}`` -> the schema fingerprint, schema and the initial weights
from the public seed; ``{"op": "train", "arrays": {...}, "config": {...}}`` -> new arrays and
metrics; ``{"op": "codes", "arrays": {...}, "config": {...}}`` -> the holder's rows encoded by
the global models; ``{"op": "report", "config": {...}}`` -> the holder's DP section and
ledger totals; ``{"op": "stop"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from multiprocessing.connection import Listener
from pathlib import Path


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"the worker listens on loopback only, not {host!r}")
    return "127.0.0.1", int(port)


class Holder:
    """The holder's table, its DP plan and its training state across rounds."""

    def __init__(self, profile_ref: str, input_path: str, name: str,
                 control_fraction: float = 0.0, seed: int = 0, model: str = "codes"):
        from cloakflow.federated import task
        from cloakflow.tasks.data.profile import load_profile

        self.task = task
        self.name = name
        self.profile = load_profile(profile_ref)
        self.input_path = input_path
        self.model = model
        self.data = task.load_holder(self.profile, input_path, control_fraction, seed, model)
        self.ledger: dict = {}
        self.plan = None  # task.FederatedDpPlan, once planned
        self.dp_counts = None  # the holder's DP counts (drawn once, after the ledger entry)
        self.dp_rows = None  # their sum: the DP row count
        self.dp_rounds = 0  # rounds trained under the DP plan
        self.private_rounds: list[dict] = []  # DP: each round's loss and timings, kept here
        self.rng = None  # tests only: an injected generator (never in the flow)

    def query(self, config: dict) -> dict:
        """Before round 1: the schema fingerprint, the initial weights from the public seed,
        and (DP) the holder's plan and ledger entry, so no round pays for planning."""
        config = self._settings(config)
        self._check_plan(config)
        if float(config.get("dp-epsilon", 0) or 0) > 0:
            self._plan(config)
        schema = self.data.schema
        weights = self.task.initial_weights(self.data.pre, config, int(config.get("seed", 0)))
        return {"fingerprint": self.task.fingerprint(schema), "schema": schema,
                "holder": self.name, "arrays": self.task.to_arrays(weights)}

    def _settings(self, config: dict) -> dict:
        """The request's settings; the model kind is the holder's own (its table was encoded
        for it when the worker started), and a server asking for another is refused."""
        asked = config.get("model", self.model)
        if asked != self.model:
            raise RuntimeError(f"refused: the server asks for {asked!r} models, this holder "
                               f"loaded its table for {self.model!r}")
        return {**config, "model": self.model}

    PLANNED = ("dp-epsilon", "dp-delta", "dp-clip", "dp-sampling-rate", "num-server-rounds",
               "local-epochs")

    def _plan(self, config: dict) -> None:
        """Plan the holder's DP once, record the whole run in its ledger, then draw its DP row
        count; the plan then binds: later requests must carry the same DP settings and
        rounds."""
        if self.plan is not None:
            return
        plan = self.task.dp_plan(config, len(self.task.model_names(self.data.pre, config)))
        self._spend(config, plan)  # raises past the cap: then nothing is planned or drawn
        self.plan = plan
        self.planned = {k: config.get(k) for k in self.PLANNED}
        self.dp_counts = self.task.dp_counts(self.data, config, plan, self.rng)
        self.dp_rows = max(1.0, float(self.dp_counts.sum()))
        print(f"[{self.name}] DP planned: DP-SGD sigma {plan.sgd.noise_multiplier:.4f}, q "
              f"{plan.sgd.sampling_rate:g}, {plan.steps_per_round} steps per round; row count "
              f"sigma {plan.count_sigma:.2f}; epsilon {plan.epsilon:.4f} over all rounds "
              "(add/remove one row)", flush=True)

    def _check_plan(self, config: dict) -> None:
        """Refuse a request that would change what the ledger recorded (the server cannot
        turn the holder's DP off, loosen it or add rounds)."""
        if self.plan is None:
            return
        changed = [k for k in self.PLANNED if config.get(k) != self.planned[k]]
        if changed:
            raise RuntimeError(f"refused: the request changes {changed} from the holder's "
                               "recorded DP plan")

    def train(self, arrays: dict, config: dict) -> dict:
        config = self._settings(config)
        dp = float(config.get("dp-epsilon", 0) or 0) > 0
        weights = self.task.from_arrays(arrays)
        self._check_plan(config)
        if dp:
            self._plan(config)
            if self.dp_rounds >= self.plan.rounds:
                raise RuntimeError("the holder's DP budget covers no further round")
        weight = self.task.holder_weight(self.data.rows, config, self.dp_rows)
        new, metrics = self.task.local_train(
            self.data, weights, config, plan=self.plan if dp else None, dp_rows=self.dp_rows,
            rng=self.rng, seed=int(config.get("seed", 0)) + int(config.get("server-round", 0)))
        if dp:
            # the server sees the noised weights, the weight and the DP figures only: the
            # loss (a mean over private rows) and the timings (they scale with the batches)
            # stay with the holder, which reports them with its run (``report``)
            self.dp_rounds += 1
            self.private_rounds.append({"round": int(config.get("server-round", 0)),
                                        **metrics})
            metrics = {"weight": weight, **self.dp_figures()}
        else:
            metrics.update(weight=weight, rows=self.data.rows)
        return {"arrays": self.task.to_arrays(new), "metrics": metrics}

    def dp_section(self, plan=None) -> dict:
        """The holder's whole DP run (all its models, every round, the row count), in the
        manifest's ``dp`` shape (``tasks.privacy.dp.dp_section``)."""
        return (plan or self.plan).section(self.task.model_names(
            self.data.pre, {"model": self.model}))

    def _spend(self, config: dict, plan) -> None:
        """Record the whole run's spend in the holder's ledger (dataset ``<profile>@<holder>``)
        before any DP step reads its rows; refuse past the profile's lifetime cap.

        Raises:
            BudgetExhausted: the holder's ledger would pass ``privacy.dp_cap``.
        """
        from cloakflow.tasks.data.locate import sha256_file
        from cloakflow.tasks.privacy import ledger

        dp = self.dp_section(plan)
        cap = self.profile.privacy.dp_cap
        entry = ledger.make_entry(f"{self.profile.name}@{self.name}", str(config.get(
            "run-name", "federated")), sha256_file(Path(self.input_path)),
            self.data.source_rows or self.data.rows, self.data.rows, dp)
        # the holder's own ledger file: its MLflow mirror is the coordinator's, not the holder's
        after, path = ledger.spend(dp, cap.model_dump() if cap else None, entry,
                                   include_mlflow=False)
        self.ledger = {"file": str(path), "total_epsilon": after.epsilon,
                       "total_delta": after.delta, "runs": after.runs}
        print(f"[{self.name}] privacy ledger {path}: this run spends epsilon "
              f"{dp['epsilon']:.4g} at delta {dp['delta']:g}", flush=True)

    def dp_figures(self) -> dict:
        """What the server may see of the holder's DP (all public or DP outputs): the spend
        so far (the count and every round so far), sigma, q and the steps run."""
        p = self.plan
        return {"dp-epsilon-spent": p.spent(self.dp_rounds), "dp-delta": p.delta,
                "dp-sigma": p.sgd.noise_multiplier, "dp-sampling-rate": p.sgd.sampling_rate,
                "dp-steps": p.steps_per_round * self.dp_rounds}

    def report(self, config: dict) -> dict:
        """What the holder publishes about its run: its DP section (None without DP), its DP
        row count, and its ledger's totals; the exact row count only without DP."""
        dp = self.dp_section() if self.plan is not None else None
        from cloakflow.tasks.data.locate import sha256_file

        # without DP the table's hash is published (as a codes release does): a holder's
        # release run checks that it reads the table the holder trained on
        sha = None if dp else sha256_file(Path(self.input_path))
        return {"holder": self.name, "dp": dp, "ledger": self.ledger, "source_sha256": sha,
                "rows": None if dp else self.data.rows, "dp_rounds": self.dp_rounds,
                "dp_rows": None if self.dp_rows is None else round(self.dp_rows, 1),
                "dp_counts": None if self.dp_counts is None else
                [round(float(c), 1) for c in self.dp_counts],
                "private_rounds": self.private_rounds}

    def codes(self, arrays: dict, config: dict) -> dict:
        config = self._settings(config)
        if not self.task.family(self.model).encodes:
            raise RuntimeError(f"codes: this holder trains {self.model!r}, which encodes no "
                               "rows")
        weights = self.task.from_arrays(arrays)
        return {"codes": self.task.codes_of(self.data, weights, config),
                "rows": None if self.plan is not None else self.data.rows}


def serve(holder: Holder, address: tuple[str, int], key: bytes,
          ready_file: str | None = None) -> None:
    """Answer requests until ``stop``; an error in one request is returned, not fatal."""
    from multiprocessing import AuthenticationError

    with Listener(address, authkey=key) as listener:
        host, port = listener.address  # port 0: the OS chose a free one
        if ready_file:  # written whole, then renamed: a reader never sees half of it
            tmp = Path(f"{ready_file}.tmp")
            tmp.write_text(json.dumps({"pid": os.getpid(), "address": f"{host}:{port}"}))
            tmp.replace(ready_file)
        print(f"[{holder.name}] ready on {host}:{port}", flush=True)
        while True:
            try:
                conn = listener.accept()
            except (AuthenticationError, EOFError, OSError) as exc:  # a bad client, not us
                print(f"[{holder.name}] refused a connection: {exc!r}", flush=True)
                continue
            with conn:
                try:
                    request = conn.recv()
                except (EOFError, OSError):
                    continue
                op = request.get("op") if isinstance(request, dict) else None
                if op == "stop":
                    conn.send({"ok": True})
                    return
                t = time.perf_counter()
                try:
                    if op == "query":
                        reply = holder.query(request.get("config", {}))
                    elif op == "train":
                        reply = holder.train(request["arrays"], request.get("config", {}))
                    elif op == "report":
                        reply = holder.report(request.get("config", {}))
                    elif op == "codes":
                        reply = holder.codes(request["arrays"], request.get("config", {}))
                    else:
                        raise ValueError(f"unknown request {op!r}")
                    reply["seconds"] = time.perf_counter() - t
                except Exception as exc:  # reported to the ClientApp, which fails the round
                    traceback.print_exc()
                    reply = {"error": f"{type(exc).__name__}: {exc}"}
                try:
                    conn.send(reply)
                except (OSError, EOFError):
                    print(f"[{holder.name}] the client left before the reply", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--holder", required=True)
    ap.add_argument("--address", required=True)
    ap.add_argument("--key-file", required=True)
    ap.add_argument("--ready-file")
    ap.add_argument("--error-file")
    ap.add_argument("--control-fraction", type=float, default=0.0,
                    help="share of the holder's rows kept out of training (its release's "
                         "control rows)")
    ap.add_argument("--seed", type=int, default=0, help="seeds that split")
    ap.add_argument("--model", choices=("codes", "vae"), default="codes",
                    help="what the federation trains (the table is encoded for it)")
    args = ap.parse_args(argv)
    from cloakflow.tasks import runtime

    runtime.set_env_defaults()
    runtime.quiet_tensorflow_import()
    key = Path(args.key_file).read_bytes()
    try:
        holder = Holder(args.profile, args.input, args.holder, args.control_fraction,
                        args.seed, args.model)
    except Exception as exc:  # a holder with a bad table is refused with the readable error
        message = f"holder {args.holder!r} ({args.input}): {exc}"
        if args.error_file:
            Path(args.error_file).write_text(message)
        print(message, file=sys.stderr, flush=True)
        return 2
    serve(holder, _address(args.address), key, args.ready_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
