"""Publish a release atomically: Parquet files and a manifest, renamed into place at the end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from prefect import task

from cloakflow.tasks.data.profile import REPO_ROOT
from cloakflow.tasks.release.kinds import Release
from cloakflow.tasks.release.manifest import Manifest
from cloakflow.tasks.retry import retry_on_io


def code_version() -> str:
    """The git commit of the code that made the release ('unknown' outside a checkout)."""
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        sha = out.stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return (sha + ("+dirty" if dirty else "")) if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_release(out_dir: str | Path, dataset: str, release_id: str,
                  tables: dict[str, pl.DataFrame], manifest: dict[str, Any]) -> Path:
    """Write ``<out>/<dataset>/<release_id>/`` atomically.

    Files go to a hidden temporary sibling folder first; the folder is renamed into place only
    after every file was written, so a crash leaves no partial release under the final name.

    Raises:
        FileExistsError: a release with that id already exists.
    """
    parent = Path(out_dir) / dataset
    final = parent / release_id
    if final.exists():
        raise FileExistsError(f"release {final} already exists")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{release_id}.", suffix=".partial", dir=parent))
    try:
        files = {}
        for name, table in tables.items():
            path = tmp / f"{name}.parquet"
            table.write_parquet(path)
            files[name] = {"file": path.name, "rows": table.height, "columns": table.width}
        manifest = {**manifest, "files": files,
                    "created_at": datetime.now(UTC).isoformat(timespec="seconds")}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str) + "\n")
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp's folder is private (0700); a release is shared
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


@task(name="publish", retries=1, retry_delay_seconds=2, retry_condition_fn=retry_on_io)
def publish(out_dir: str, dataset: str, release_id: str, tables: dict[str, pl.DataFrame],
            manifest: Manifest) -> str:
    """Prefect task: atomic publish (retried once on I/O errors)."""
    path = write_release(out_dir, dataset, release_id, tables, manifest.to_json())
    print(f"published {path}", flush=True)
    return str(path)


def publish_release(out_dir: str, release: Release, labels: pl.Series, manifest: Manifest,
                    parent: str, note: str, verdict: str) -> str:
    """Publish ``release`` with its manifest: rows in a secret random order (OS entropy; the
    permutation is kept in the MLflow run, the owner's copy, so ``cloakflow attack`` can align
    released rows with source rows), the manifest logged to MLflow too, and a summary on the
    flow run's page. Returns the release folder."""
    import numpy as np

    from cloakflow.tasks import artifacts, tracking

    order = np.random.default_rng().permutation(len(labels))  # secret: not from the seed
    tracking.log_text(parent, json.dumps(order.tolist()), "release/row_order.json")
    path = publish(out_dir, manifest.dataset, parent, release.frames(labels, order), manifest)
    tracking.log_dict(parent, manifest.to_json(), "release/manifest.json")
    artifacts.markdown("release", manifest.dataset,
                       f"# Release `{path}`\n\n{note}\n\nPrivacy verdict: **{verdict}**.\n\n"
                       f"MLflow run `{parent}`.\n\n> {release.statement}\n", "Published release")
    return path
