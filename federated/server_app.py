"""The federation's Flower ServerApp (Message API): agree on the shared schema, then FedAvg.

1. **Schema agreement.** Every holder is asked (message type ``query``) for the fingerprint of
   its encoding (``task.schema_of``: columns, kinds, one-hot blocks, public bounds) and for the
   initial weights built from the public seed; one differing fingerprint stops the run before
   any training, naming the holders that differ.
2. **FedAvg** (McMahan et al. 2017, Flower's ``FedAvg`` strategy; or ``FedProx``, Li et al.
   2020, with ``strategy = "fedprox"`` and ``proximal-mu``) for ``num-server-rounds`` rounds:
   every holder trains ``local-epochs`` from the global weights, the server averages the
   returned weights, each weighted by the holder's ``weight`` metric (its row count without DP;
   under DP, where counts are private: 1, a size the holder declares public, or its DP count).
3. **Output** in ``output-dir`` (run config): ``rounds.jsonl`` (one line per round, written as
   the round ends: wall seconds, each holder's loss, training seconds and DP spend),
   ``global.npz`` (the final weights, ``model/index`` keys; with ``save-rounds`` also
   ``global-round<r>.npz`` after every round, round 0 the initial weights), ``result.json``
   (settings, schema fingerprint, holders, timings) — or ``error.txt`` if the run fails.
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg, FedProx

app = ServerApp()

SETTINGS = ("model", "latent", "num-server-rounds", "local-epochs", "batch-size",
            "learning-rate", "seed", "strategy", "proximal-mu",
            "dp-epsilon", "dp-delta", "dp-clip", "dp-sampling-rate", "weighting",
            "declared-size", "run-name")


class FederationError(RuntimeError):
    """The federation cannot proceed (missing holders, schema mismatch, a failed holder)."""


def _wait_for_nodes(grid: Grid, count: int, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= count:
            return nodes[:count]
        if time.monotonic() > deadline:
            raise FederationError(f"{len(nodes)} of {count} holders connected within "
                                  f"{timeout:.0f} s")
        time.sleep(0.5)


def agree_on_schema(grid: Grid, nodes: list[int], settings: dict,
                    timeout: float) -> tuple[ArrayRecord, dict]:
    """Ask every holder for its schema fingerprint and the public-seed initial weights.

    Raises:
        FederationError: a holder failed or the fingerprints differ.
    """
    messages = [Message(RecordDict({"config": ConfigRecord(settings)}), dst_node_id=n,
                        message_type="query") for n in nodes]
    replies = list(grid.send_and_receive(messages, timeout=timeout))
    errors = [r.error.reason for r in replies if r.has_error()]
    if errors or len(replies) < len(nodes):
        raise FederationError("schema query failed: " + ("; ".join(errors) or
                                                         f"{len(replies)} of {len(nodes)} "
                                                         "holders replied"))
    by_holder = {str(r.content["schema"]["holder"]): r for r in replies}
    prints = {h: str(r.content["schema"]["fingerprint"]) for h, r in by_holder.items()}
    if len(set(prints.values())) > 1:
        first = next(iter(by_holder.values()))
        reference = json.loads(str(first.content["schema"]["schema"]))
        diffs = []
        for holder, r in by_holder.items():
            other = json.loads(str(r.content["schema"]["schema"]))
            cols = [a["name"] for a, b in zip(reference["columns"], other["columns"],
                                                strict=False) if a != b]
            if cols or len(reference["columns"]) != len(other["columns"]):
                diffs.append(f"{holder}: {cols or 'a different column list'}")
        raise FederationError("the holders' tables encode differently (rule: shared schema): "
                              + "; ".join(diffs) + ". Every holder must use the same profile "
                              "with public bounds for every feature")
    first = replies[0]
    return first.content["arrays"], {"fingerprint": next(iter(prints.values())),
                                     "holders": sorted(prints)}


class PromptGrid:
    """The run's Grid with replies pulled every ``interval`` seconds instead of Flower's fixed
    3 s (``send_and_receive`` on the public ``push_messages``/``pull_messages`` API): a round
    ends when its last reply arrives, not up to 3 s later. Everything else is the Grid's."""

    def __init__(self, grid: Grid, interval: float = 0.1):
        self._grid = grid
        self.interval = interval

    def __getattr__(self, name):
        return getattr(self._grid, name)

    def send_and_receive(self, messages, *, timeout: float | None = None):
        pending = set(self._grid.push_messages(messages))
        end = time.time() + (timeout if timeout is not None else 0.0)
        replies: list[Message] = []
        while timeout is None or time.time() < end:
            got = list(self._grid.pull_messages(pending))
            replies.extend(got)
            pending.difference_update(m.metadata.reply_to_message_id for m in got)
            if not pending:
                break
            time.sleep(self.interval)
        return replies


class RoundLog:
    """Writes ``rounds.jsonl`` as rounds end; FedAvg calls ``aggregate`` with the round's
    replies and ``evaluate`` after each round (and once before the first)."""

    def __init__(self, path: Path, holders: int, save_rounds: bool = False):
        self.path = path
        self.holders = holders
        self.save_rounds = save_rounds  # global weights after every round (benchmarks)
        self.round = 0
        self.marks: list[float] = []
        self.replies: dict[int, list[dict]] = {}

    def aggregate(self, records: list[RecordDict], weighting_key: str) -> MetricRecord:
        self.round += 1
        if len(records) < self.holders:  # a holder failed: never average a partial federation
            raise FederationError(f"round {self.round}: {len(records)} of {self.holders} "
                                  "holders returned weights (see the SuperNode logs)")
        rows = []
        for rec in records:
            m = dict(rec["metrics"])
            rows.append({k: (float(v) if isinstance(v, (int, float)) else v)
                         for k, v in m.items()})
        self.replies[self.round] = rows
        if not all("train-loss" in r for r in rows):  # DP: holders keep their losses
            return MetricRecord({})
        total = sum(r.get(weighting_key, 0.0) for r in rows) or 1.0
        return MetricRecord({"train-loss": sum(r["train-loss"] * r.get(weighting_key, 0.0)
                                               for r in rows) / total})

    def evaluate(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        now = time.time()
        self.marks.append(now)
        if self.save_rounds:
            np.savez(self.path.parent / f"global-round{server_round}.npz",
                     **{k: v.numpy() for k, v in arrays.items()})
        if server_round >= 1:
            rows = self.replies.get(server_round, [])
            wall = now - self.marks[-2]
            line = {"round": server_round, "wall_seconds": round(wall, 3),
                    "slowest_training_seconds": None, "overhead_seconds": None,
                    "holders": rows, "time": now}
            if rows and all("train-seconds" in r for r in rows):  # not under DP
                slowest = max(r["train-seconds"] for r in rows)
                line.update(slowest_training_seconds=round(slowest, 3),
                            overhead_seconds=round(wall - slowest, 3))
            with self.path.open("a") as fh:
                fh.write(json.dumps(line) + "\n")
        return None


def make_strategy(cfg, holders: int, log: RoundLog) -> FedAvg:
    """Flower's FedAvg, or FedProx (Li et al. 2020) with ``proximal-mu`` (sent to every holder
    in the train config; the holder adds mu * (w - w_global) to each local step's gradient):
    every holder trains every round, updates averaged by the ``weight`` metric."""
    kw = dict(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=holders,
              min_evaluate_nodes=0, min_available_nodes=holders, weighted_by_key="weight",
              train_metrics_aggr_fn=log.aggregate)
    name = str(cfg.get("strategy", "fedavg"))
    if name == "fedprox":
        return FedProx(proximal_mu=float(cfg.get("proximal-mu", 0.0)), **kw)
    if name != "fedavg":
        raise FederationError(f"unknown strategy {name!r}: fedavg or fedprox")
    return FedAvg(**kw)


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    grid = PromptGrid(grid)
    out = Path(str(cfg["output-dir"]))
    out.mkdir(parents=True, exist_ok=True)
    try:
        _run(grid, cfg, out)
    except Exception as exc:
        (out / "error.txt").write_text(f"{type(exc).__name__}: {exc}\n"
                                       + traceback.format_exc())
        raise


def _run(grid: Grid, cfg, out: Path) -> None:
    holders = int(cfg["holders"])
    timeout = float(cfg["timeout"])
    settings = {k: cfg[k] for k in SETTINGS if k in cfg}
    t0 = time.time()
    nodes = _wait_for_nodes(grid, holders, timeout)
    initial, agreed = agree_on_schema(grid, nodes, settings, timeout)
    log = RoundLog(out / "rounds.jsonl", holders, bool(cfg.get("save-rounds", False)))
    strategy = make_strategy(cfg, holders, log)
    t1 = time.time()
    result = strategy.start(grid=grid, initial_arrays=initial,
                            num_rounds=int(cfg["num-server-rounds"]), timeout=timeout,
                            train_config=ConfigRecord(settings), evaluate_fn=log.evaluate)
    final = {k: v.numpy() for k, v in result.arrays.items()}
    if log.round < int(cfg["num-server-rounds"]):
        raise FederationError(f"only {log.round} of {cfg['num-server-rounds']} rounds "
                              "completed (a holder failed or timed out)")
    np.savez(out / "global.npz", **final)
    (out / "result.json").write_text(json.dumps({
        "settings": settings, **agreed, "rounds": log.round,
        "schema_seconds": round(t1 - t0, 3), "training_seconds": round(time.time() - t1, 3),
    }, indent=1, default=str))
