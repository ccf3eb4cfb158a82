"""Dataset profiles: the YAML contract that describes a table to cloakflow.

A profile names the target, the columns to drop, the feature groups (one autoencoder each), the
quasi-identifiers, how to treat missing values and unseen categories, and where the data comes
from. Nothing about a particular dataset is hard-coded outside its profile and its expectation
suite.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

REPO_ROOT = Path(__file__).resolve().parents[1]
PROFILES_DIR = Path(
    os.environ.get("CLOAKFLOW_PROFILES_DIR", REPO_ROOT / "deployments" / "profiles"))
EXPECTATIONS_DIR = REPO_ROOT / "expectations"

ColumnKind = Literal["numeric", "categorical"]


class ProfileError(ValueError):
    """A profile file is missing or does not satisfy the profile contract."""


class Target(BaseModel):
    """The label column and the value that counts as the positive class."""

    model_config = ConfigDict(extra="forbid")

    column: str
    positive: str | int | float | bool


class Source(BaseModel):
    """Where the table can be fetched from when no local copy is given."""

    model_config = ConfigDict(extra="forbid")

    file: str = Field(description="file name looked up in CLOAKFLOW_DATA_DIR and the cache")
    sha256: str | None = Field(default=None, description="expected SHA-256 of the file")
    url: str | None = Field(default=None, description="public download address")
    archive_path: list[str] = Field(
        default_factory=list,
        description="members to open inside the download, outermost first (nested zips)",
    )


class DatasetProfile(BaseModel):
    """Everything cloakflow needs to know about one table."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    format: Literal["csv", "parquet"] = "csv"
    separator: str = ","
    target: Target
    drop: list[str] = Field(default_factory=list)
    groups: dict[str, list[str]] = Field(min_length=1)
    quasi_identifiers: list[str] = Field(default_factory=list)
    missing: Literal["error", "impute"] = "error"
    unseen: Literal["error", "ignore"] = "error"
    columns: dict[str, ColumnKind] = Field(default_factory=dict)
    expectations: str | None = None
    source: Source | None = None

    @model_validator(mode="after")
    def _check_columns(self) -> DatasetProfile:
        seen: dict[str, str] = {}
        for group, cols in self.groups.items():
            if not group.isidentifier():
                raise ValueError(f"group name {group!r} must be an identifier (it prefixes codes)")
            if not cols:
                raise ValueError(f"group {group!r} lists no columns")
            for col in cols:
                if col in seen:
                    raise ValueError(f"column {col!r} is in groups {seen[col]!r} and {group!r}")
                seen[col] = group
        bad = {self.target.column, *self.drop} & set(seen)
        if bad:
            raise ValueError(f"target or dropped columns listed in a group: {sorted(bad)}")
        return self

    @property
    def features(self) -> list[str]:
        """Feature columns in group order."""
        return [c for cols in self.groups.values() for c in cols]

    @property
    def group_of(self) -> dict[str, str]:
        """Map each feature column to its group."""
        return {c: g for g, cols in self.groups.items() for c in cols}

    def suite_path(self) -> Path | None:
        """The expectation suite file, if the profile names one."""
        if self.expectations is None:
            return None
        path = Path(self.expectations)
        return path if path.is_absolute() else EXPECTATIONS_DIR / path


def load_profile(name_or_path: str | Path) -> DatasetProfile:
    """Load and validate a profile by dataset name or by YAML path.

    Args:
        name_or_path: a dataset name (looked up in ``deployments/profiles/``) or a path to YAML.

    Raises:
        ProfileError: the file is missing, is not YAML, or breaks the contract.
    """
    path = Path(name_or_path)
    if path.suffix not in {".yaml", ".yml"}:
        path = PROFILES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
        raise ProfileError(f"no profile at {path} (known datasets: {', '.join(known) or 'none'})")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from exc
    try:
        profile = DatasetProfile.model_validate(raw)
    except ValidationError as exc:
        raise ProfileError(f"{path}: {exc}") from exc
    if profile.expectations is not None and not profile.suite_path().is_file():
        raise ProfileError(f"{path}: expectation suite {profile.suite_path()} does not exist")
    return profile
