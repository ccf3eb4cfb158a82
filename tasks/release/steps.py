"""Prefect task of publishing: the atomic write of a release (retried once on I/O errors), the
one publish path of every release kind (``flows/release.py``)."""

from __future__ import annotations

import polars as pl
from prefect import task

from cloakflow.tasks.release.publish import write_release
from cloakflow.tasks.retry import retry_on_io


@task(name="publish", task_run_name="publish[{dataset}]", retries=1, retry_delay_seconds=2,
      retry_condition_fn=retry_on_io)
def publish(out_dir: str, dataset: str, release_id: str, tables: dict[str, pl.DataFrame],
            manifest: dict, documents: dict[str, str | bytes], readme: str) -> str:
    """Prefect task: ``write_release`` (atomic; retried once on I/O errors), with the folder's
    documents and README; returns the release folder."""
    path = write_release(out_dir, dataset, release_id, tables, manifest, documents, readme)
    print(f"published {path}", flush=True)
    return str(path)
