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
                 control_fraction: float = 0.0, seed: int = 0):
        from cloakflow.federated import task
        from cloakflow.tasks.data.profile import load_profile

        self.task = task
        self.name = name
        self.profile = load_profile(profile_ref)
        self.input_path = input_path
        self.data = task.load_holder(self.profile, input_path, control_fraction, seed)
        self.ledger: dict = {}
        self.dp_total = None
        self.dp_round = None
        self.dp_rounds = 0  # rounds trained under the DP plan
        self.rng = None  # tests only: an injected generator (never in the flow)

    def query(self, config: dict) -> dict:
        """Before round 1: the schema fingerprint, the initial weights from the public seed,
        and (DP) the holder's plan and ledger entry, so no round pays for planning."""
        self._check_plan(config)
        if float(config.get("dp-epsilon", 0) or 0) > 0:
            self._plan(config)
        schema = self.data.schema
        weights = self.task.initial_weights(self.data.pre, config, int(config.get("seed", 0)))
        return {"fingerprint": self.task.fingerprint(schema), "schema": schema,
                "holder": self.name, "arrays": self.task.to_arrays(weights)}

    PLANNED = ("dp-epsilon", "dp-delta", "dp-clip", "num-server-rounds", "local-epochs",
               "batch-size")

    def _plan(self, config: dict) -> None:
        """Plan the holder's DP-SGD once and record it in its ledger; the plan then binds:
        later requests must carry the same DP settings and rounds."""
        if self.dp_total is None:
            total, one = self.task.dp_plan(self.data.rows, config)
            self._spend(config, total, one)  # raises past the cap: then nothing is planned
            self.dp_total, self.dp_round = total, one
            self.planned = {k: config.get(k) for k in self.PLANNED}

    def _check_plan(self, config: dict) -> None:
        """Refuse a request that would change what the ledger recorded (the server cannot
        turn the holder's DP off, loosen it or add rounds)."""
        if self.dp_total is None:
            return
        changed = [k for k in self.PLANNED if config.get(k) != self.planned[k]]
        if changed:
            raise RuntimeError(f"refused: the request changes {changed} from the holder's "
                               "recorded DP plan")
            print(f"[{self.name}] DP-SGD planned: sigma {self.dp_total.noise_multiplier:.4f}, "
                  f"q {self.dp_total.sampling_rate:.5f}, {self.dp_round.steps} steps per round, "
                  f"epsilon {self.dp_total.epsilon:.4f} over all rounds", flush=True)

    def train(self, arrays: dict, config: dict) -> dict:
        dp = float(config.get("dp-epsilon", 0) or 0) > 0
        weights = self.task.from_arrays(arrays)
        self._check_plan(config)
        if dp:
            self._plan(config)
            if self.dp_rounds >= int(self.planned["num-server-rounds"]):
                raise RuntimeError("the holder's DP budget covers no further round")
        weight = self.task.holder_weight(self.data.rows, config)
        new, metrics = self.task.local_train(
            self.data, weights, config, round_budget=self.dp_round if dp else None,
            rng=self.rng, seed=int(config.get("seed", 0)) + int(config.get("server-round", 0)))
        metrics["weight"] = weight
        if dp:
            self.dp_rounds += 1
            metrics.update(self.dp_figures())
        else:
            metrics["rows"] = self.data.rows  # private to DP runs only
        return {"arrays": self.task.to_arrays(new), "metrics": metrics}

    def dp_section(self, config: dict, total=None, one=None) -> dict:
        """The holder's whole DP-SGD run as one mechanism (all its models, every round), in
        the manifest's ``dp`` shape (``tasks.privacy.dp.dp_section``)."""
        from cloakflow.models.training.accounting import epsilon

        b, rounds = total or self.dp_total, int(config["num-server-rounds"])
        steps = (one or self.dp_round).steps * rounds
        run = epsilon(b.noise_multiplier, b.sampling_rate, steps, b.delta, accountant="pld",
                      adjacency="replace_one")
        k = len(self.task.members(self.data.pre))
        mechanism = {"models": list(self.task.members(self.data.pre)),
                     "noise_multiplier": b.noise_multiplier, "sampling_rate": b.sampling_rate,
                     "sampling": "poisson", "steps": steps,
                     "clip_norm": float(config["dp-clip"]) * k ** 0.5,
                     "epsilon": run.epsilon, "delta": b.delta}
        return {"design": "joint", "adjacency": "replace_one", "accountant": "pld",
                "epsilon": run.epsilon, "delta": b.delta, "mechanisms": [mechanism]}

    def _spend(self, config: dict, total, one) -> None:
        """Record the whole run's spend in the holder's ledger (dataset ``<profile>@<holder>``)
        before any DP step reads its rows; refuse past the profile's lifetime cap.

        Raises:
            BudgetExhausted: the holder's ledger would pass ``privacy.dp_cap``.
        """
        from cloakflow.tasks.data.locate import sha256_file
        from cloakflow.tasks.privacy import ledger

        dp = self.dp_section(config, total, one)
        cap = self.profile.privacy.dp_cap
        entry = ledger.make_entry(f"{self.profile.name}@{self.name}", str(config.get(
            "run-name", "federated")), sha256_file(Path(self.input_path)), self.data.rows,
            self.data.rows, dp)
        # the holder's own ledger file: its MLflow mirror is the coordinator's, not the holder's
        after, path = ledger.spend(dp, cap.model_dump() if cap else None, entry,
                                   include_mlflow=False)
        self.ledger = {"file": str(path), "total_epsilon": after.epsilon,
                       "total_delta": after.delta, "runs": after.runs}
        print(f"[{self.name}] privacy ledger {path}: this run spends epsilon "
              f"{dp['epsilon']:.4g} at delta {dp['delta']:g}", flush=True)

    def dp_figures(self) -> dict:
        """This holder's spend so far: every round ran ``dp_round``'s steps at one sigma."""
        from cloakflow.models.training.accounting import epsilon

        b = self.dp_total
        spent = epsilon(b.noise_multiplier, b.sampling_rate, self.dp_round.steps *
                        self.dp_rounds, b.delta, accountant="pld", adjacency="replace_one")
        return {"dp-epsilon-spent": spent.epsilon, "dp-delta": b.delta,
                "dp-sigma": b.noise_multiplier, "dp-sampling-rate": b.sampling_rate,
                "dp-steps": self.dp_round.steps * self.dp_rounds}

    def report(self, config: dict) -> dict:
        """What the holder publishes about its run: its DP section (None without DP) and its
        ledger's totals; the row count only without DP."""
        dp = self.dp_section(config) if self.dp_total is not None else None
        return {"holder": self.name, "dp": dp, "ledger": self.ledger,
                "rows": None if dp else self.data.rows, "dp_rounds": self.dp_rounds}

    def codes(self, arrays: dict, config: dict) -> dict:
        weights = self.task.from_arrays(arrays)
        return {"codes": self.task.codes_of(self.data, weights, config),
                "rows": self.data.rows}


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
    args = ap.parse_args(argv)
    from cloakflow.tasks import runtime

    runtime.set_env_defaults()
    runtime.quiet_tensorflow_import()
    key = Path(args.key_file).read_bytes()
    try:
        holder = Holder(args.profile, args.input, args.holder, args.control_fraction,
                        args.seed)
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
