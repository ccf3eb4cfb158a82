"""``cloakflow attack RELEASE_DIR``: rerun the attacks on a published codes release, beside the
data owner's MLflow store. The work is ``tasks.privacy.rerun`` (a plain function, not a flow)."""

from cloakflow.tasks.privacy.rerun import ReleaseMismatch, attack_published, summary_markdown

__all__ = ["attack_published", "summary_markdown", "ReleaseMismatch"]
