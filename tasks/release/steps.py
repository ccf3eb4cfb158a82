"""Prefect tasks of publishing: the atomic write of a release (retried once on I/O errors) and
``publish_release``, which orders the rows secretly, publishes and records the release."""

from __future__ import annotations

import json

import polars as pl
from prefect import task

from cloakflow.tasks.release.kinds import Release
from cloakflow.tasks.release.manifest import Manifest
from cloakflow.tasks.release.publish import codes_documents, write_release
from cloakflow.tasks.retry import retry_on_io
from cloakflow.tasks.steps import markdown


@task(name="publish", retries=1, retry_delay_seconds=2, retry_condition_fn=retry_on_io)
def publish(out_dir: str, dataset: str, release_id: str, tables: dict[str, pl.DataFrame],
            manifest: Manifest) -> str:
    """Prefect task: atomic publish (retried once on I/O errors), with the folder's report
    documents and README (``codes_documents``)."""
    documents, readme = codes_documents(tables, manifest)
    path = write_release(out_dir, dataset, release_id, tables, manifest.to_json(), documents,
                         readme)
    print(f"published {path}", flush=True)
    return str(path)


def publish_release(out_dir: str, release: Release, labels: pl.Series, manifest: Manifest,
                    parent: str, note: str, verdict: str) -> str:
    """Publish ``release`` with its manifest: rows in a secret random order (OS entropy; the
    permutation is kept in the MLflow run, the owner's copy, so ``cloakflow attack`` can align
    released rows with source rows), the manifest logged to MLflow too, and a summary on the
    flow run's page. Returns the release folder."""
    import numpy as np

    from cloakflow.tasks import tracking

    order = np.random.default_rng().permutation(len(labels))  # secret: not from the seed
    tracking.log_text(parent, json.dumps(order.tolist()), "release/row_order.json")
    path = publish(out_dir, manifest.dataset, parent, release.frames(labels, order), manifest)
    tracking.log_dict(parent, manifest.to_json(), "release/manifest.json")
    markdown("release", manifest.dataset,
                       f"# Release `{path}`\n\n{note}\n\nPrivacy verdict: **{verdict}**.\n\n"
                       f"MLflow run `{parent}`.\n\n> {release.statement}\n", "Published release")
    return path
