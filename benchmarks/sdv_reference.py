#!/usr/bin/env python
"""Reference figures from SDV: TVAE or CTGAN on the bank table, and SDMetrics quality of synthetic
tables.

Reads ``DIR/bank-additional-full.csv`` (UCI Bank Marketing, ``;``-separated), drops ``duration``
and splits it 80/20 as the project does (``train_test_split(arange(n), test_size=0.2,
stratify=y, random_state=42)``, both parts in file order), or takes the training rows from
``--train FILE`` (the product's split: ``vae_synthesis.py --split product --save DIR`` writes
them). Unless ``--quality-only`` is given, fits SDV's ``TVAESynthesizer`` or, with
``--synthesizer ctgan``, ``CTGANSynthesizer`` on the training rows (timing the fit, child
processes' CPU included), samples as many rows as the source has and writes them to
``OUTDIR/<synthesizer>.parquet`` with the source's column types. For that
table and each ``--quality-only`` parquet, computes SDMetrics' single-table ``QualityReport``
against the train part and writes ``OUTDIR/<stem>.quality.json``.

SDV (2.x API) is not a project dependency: run this in its own virtual environment, e.g.

    python3.11 -m venv /tmp/sdv-env
    /tmp/sdv-env/bin/pip install "sdv==2.0.*" "sdmetrics==0.32.*" polars pyarrow scikit-learn
    /tmp/sdv-env/bin/python benchmarks/sdv_reference.py --data-dir DIR --out OUTDIR \\
        [--epochs 80] [--synthesizer tvae|ctgan] [--train TRAIN.parquet] [--quality-only FILE ...]

This script must not import ``cloakflow`` (nor anything of the project).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
from sdmetrics.reports.single_table import QualityReport
from sdv.metadata import Metadata
from sdv.single_table import CTGANSynthesizer, TVAESynthesizer
from sklearn.model_selection import train_test_split

TABLE = "bank"
VERSIONS = {"sdv_version": version("sdv"), "sdmetrics_version": version("sdmetrics")}


def load_split(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    df = pd.read_csv(data_dir / "bank-additional-full.csv", sep=";").drop(columns="duration")
    y = (df["y"] == "yes").astype(int)
    train_idx, test_idx = train_test_split(
        np.arange(len(df)), test_size=0.2, stratify=y, random_state=42
    )
    train = df.iloc[np.sort(train_idx)].reset_index(drop=True)
    test = df.iloc[np.sort(test_idx)].reset_index(drop=True)
    return train, test


def polars_schema(source: pd.DataFrame) -> dict[str, pl.DataType]:
    def kind(dtype) -> pl.DataType:
        if pd.api.types.is_integer_dtype(dtype):
            return pl.Int64
        if pd.api.types.is_float_dtype(dtype):
            return pl.Float64
        return pl.String

    return {name: kind(dtype) for name, dtype in source.dtypes.items()}


def fit_tvae(train: pd.DataFrame, metadata: Metadata, epochs: int, rows: int, out: Path,
             kind: str = "tvae") -> dict:
    """Fit SDV's TVAE or CTGAN (``kind``) on ``train``, sample ``rows`` rows to ``out``."""
    cls = CTGANSynthesizer if kind == "ctgan" else TVAESynthesizer
    synthesizer = cls(metadata, epochs=epochs)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    synthesizer.fit({TABLE: train})
    child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    cpu += (child1.ru_utime + child1.ru_stime) - (child0.ru_utime + child0.ru_stime)
    print(f"{kind} fit ({epochs} epochs): {wall:.1f} s wall, {cpu:.1f} s CPU")

    synthetic = synthesizer.sample(num_rows=rows)[TABLE][list(train.columns)]
    schema = polars_schema(train)
    frame = pl.from_pandas(synthetic).select(pl.col(c).cast(t) for c, t in schema.items())
    frame.write_parquet(out)
    print(f"wrote {out} ({frame.height} rows)")
    return {"fit_wall_s": round(wall, 3), "fit_cpu_s": round(cpu, 3)}


def quality(path: Path, train: pd.DataFrame, table_meta: dict, out_dir: Path, extra: dict) -> None:
    synthetic = pl.read_parquet(path).select(train.columns).to_pandas()
    report = QualityReport()
    report.generate(train, synthetic, table_meta, verbose=False)
    props = report.get_properties().set_index("Property")["Score"]
    result = {
        "file": str(path),
        "score": float(report.get_score()),
        "column_shapes": float(props["Column Shapes"]),
        "column_pair_trends": float(props["Column Pair Trends"]),
        **VERSIONS,
        **extra,
    }
    print(
        f"{path.name}: quality {result['score']:.4f} (column shapes "
        f"{result['column_shapes']:.4f}, column pair trends {result['column_pair_trends']:.4f})"
    )
    (out_dir / f"{path.stem}.quality.json").write_text(json.dumps(result, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--quality-only", type=Path, nargs="+", metavar="FILE")
    parser.add_argument("--synthesizer", choices=["tvae", "ctgan"], default="tvae")
    parser.add_argument("--train", type=Path, default=None,
                        help="a parquet of the training rows (e.g. the product's split, "
                             "written by vae_synthesis.py --save) instead of the anchors' split")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    train, test = load_split(args.data_dir)
    rows = len(train) + len(test)
    if args.train is not None:
        train = pl.read_parquet(args.train).to_pandas()
    metadata = Metadata.detect_from_dataframes({TABLE: train})
    table_meta = metadata.to_dict()["tables"][TABLE]
    print(f"train {len(train)} rows, test {len(test)} rows; {VERSIONS}")

    if args.quality_only:
        for path in args.quality_only:
            quality(path, train, table_meta, args.out, {})
        return
    path = args.out / f"{args.synthesizer}.parquet"
    timing = fit_tvae(train, metadata, args.epochs, rows, path, args.synthesizer)
    quality(path, train, table_meta, args.out, timing)


if __name__ == "__main__":
    main()
