"""Release-time mitigation: clip every code vector to an L2 norm bound and add Gaussian noise.

This is a knob the data owner turns against inversion attacks, measured by the attack step; it
is not differential privacy on its own (the clip bound defaults to a statistic of the data, and
no accountant is run). The privacy report states the setting beside the attack results.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class NoiseApplied:
    """What was done to one model's codes."""

    multiplier: float
    clip_norm: float | None
    clip_source: str  # "profile", "median code norm" or "none"
    noise_sd: float
    clipped_share: float

    def to_dict(self) -> dict:
        return asdict(self)


def clip_and_noise(codes: np.ndarray, multiplier: float, clip_norm: float | None,
                   seed: int | None) -> tuple[np.ndarray, NoiseApplied]:
    """Clip each row of ``codes`` to L2 norm ``clip_norm`` and add N(0, (multiplier*clip)^2).

    Args:
        codes: one model's codes, one row per released record.
        multiplier: noise standard deviation per coordinate in units of the clip norm; 0
            returns the codes unchanged (no clipping either).
        clip_norm: the norm bound; ``None`` uses the median row norm of ``codes``.
        seed: seeds the noise, for measurements (the frontier); None draws it from OS entropy,
            as the main flow does for a published release: noise regenerated from a published
            seed could be subtracted again.

    Returns:
        The noised codes (float32) and a record of the setting.
    """
    if multiplier < 0:
        raise ValueError(f"noise multiplier must be >= 0, got {multiplier}")
    if multiplier == 0:
        return codes, NoiseApplied(0.0, None, "none", 0.0, 0.0)
    codes = np.asarray(codes, dtype=np.float32)
    norms = np.linalg.norm(codes, axis=1)
    source = "profile"
    if clip_norm is None:
        clip_norm, source = float(np.median(norms)) or 1.0, "median code norm"
    scale = np.minimum(1.0, clip_norm / np.maximum(norms, 1e-12)).astype(np.float32)
    sd = multiplier * clip_norm
    noise = np.random.default_rng(seed).normal(0.0, sd, size=codes.shape).astype(np.float32)
    out = codes * scale[:, None] + noise
    return out, NoiseApplied(float(multiplier), float(clip_norm), source, float(sd),
                             float((norms > clip_norm).mean()))
