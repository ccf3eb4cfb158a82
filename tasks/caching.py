"""Cache policies: a rerun after a crash reuses the expensive steps that had finished.

A step's key covers its inputs, its task's source, and the source of the modules that do the work
(a change to the model code must not reuse a stale result). Inputs that differ on every run but
do not change the result (the MLflow parent run id) are left out.
"""

from __future__ import annotations

import hashlib
import inspect
from datetime import timedelta
from types import ModuleType

from prefect.cache_policies import INPUTS, TASK_SOURCE, CacheKeyFnPolicy, CachePolicy

CACHE_EXPIRATION = timedelta(days=7)


def code_fingerprint(*modules: ModuleType) -> CachePolicy:
    """A policy whose key is the hash of the given modules' source files."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update(inspect.getsource(module).encode())
    key = digest.hexdigest()

    def _key(context, parameters) -> str:  # noqa: ARG001 - Prefect's cache_key_fn signature
        return key

    return CacheKeyFnPolicy(cache_key_fn=_key)


def step_policy(*modules: ModuleType, exclude: tuple[str, ...] = ()) -> CachePolicy:
    """Inputs (less ``exclude``) + task source + the source of ``modules``."""
    inputs = INPUTS
    for name in exclude:
        inputs = inputs - name
    return inputs + TASK_SOURCE + code_fingerprint(*modules)
