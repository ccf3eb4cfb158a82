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

from cloakflow.tasks.data.profile import REPO_ROOT


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
