"""The ``codes`` release kind: latent codes of the whole-table and per-group autoencoders.

Plain data only: a ``CodeTable`` holds the released code matrix (training-row order, noise
applied) and, per model behind it, the configuration and weights the attack step rebuilds the
Keras models from. Nothing here holds a live Keras object, so a table crosses thread, process
or machine boundaries as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cloakflow.models.autoencoder import AutoencoderConfig
from cloakflow.tasks.data.profile import CodeNoise
from cloakflow.tasks.release.noise import clip_and_noise

PSEUDONYMISATION_STATEMENT = (
    "The feature columns of this release are latent codes of deterministic autoencoders: a "
    "pseudonymised encoding of the source rows, not an anonymisation. Whoever holds the "
    "encoder or decoder, or a few source rows matched to their codes, can reconstruct source "
    "attributes. The models and the preprocessing state are therefore kept secret in the "
    "MLflow run the manifest names (mlflow.run_id) and are not part of this release. No "
    "privacy property is claimed here beyond what the release's privacy measurements state."
)


@dataclass
class CodePart:
    """One autoencoder behind a code table.

    Attributes:
        name: model name (``whole`` or a feature group).
        config: its architecture and training settings.
        weights: the autoencoder's weights (``keras.Model.get_weights()`` order).
        codes: columns ``[start, stop)`` of the table are this model's codes.
        features: the columns of the preprocessed matrix the model encodes.
    """

    name: str
    config: AutoencoderConfig
    weights: list[np.ndarray]
    start: int
    stop: int
    features: list[int]

    def models(self):
        """(autoencoder, encoder, decoder), rebuilt from the config and weights."""
        from cloakflow.models.autoencoder import autoencoder_from_weights

        return autoencoder_from_weights(len(self.features), self.config, self.weights)


@dataclass
class CodeTable:
    """One released code table and the models behind it (the attack step's secrets).

    Attributes:
        name: ``ENCODED`` (the whole-table model) or ``GROUP_ENCODED`` (one model per group).
        file: the Parquet file's stem in the release folder.
        codes: released codes, rows in training-row order (after any noise), float32.
        columns: the code columns' names.
        parts: the models, in column order.
        noise: the noise setting applied to each model's codes.
    """

    name: str
    file: str
    codes: np.ndarray
    columns: list[str]
    parts: list[CodePart]
    noise: dict[str, dict] = field(default_factory=dict)


def noisy_codes(codes: np.ndarray, noise: CodeNoise, seed: int | None, index: int):
    """One model's released codes under the noise setting (seed derived per model; None:
    secret noise from OS entropy, as for a published release)."""
    return clip_and_noise(codes, noise.multiplier, noise.clip_norm,
                          None if seed is None else seed + 7919 * (index + 1))


def code_table(name: str, file: str, models: dict, features: dict[str, list[int]],
               noise: CodeNoise, seed: int | None, first_index: int = 0) -> CodeTable:
    """A code table from trained models (``tasks.training.fit.TrainedModel``), with noise applied.

    Args:
        models: model name -> trained model (codes, config, weights).
        features: model name -> the preprocessed columns it encodes.
        first_index: derives the per-model noise seed (``ENCODED`` 0, groups from 1).
    """
    blocks, parts, noise_info, start = [], [], {}, 0
    for i, (m, trained) in enumerate(models.items(), start=first_index):
        c, applied = noisy_codes(trained.codes, noise, seed, i)
        blocks.append(c)
        parts.append(CodePart(m, trained.config, trained.weights, start, start + c.shape[1],
                              features[m]))
        noise_info[m] = applied.to_dict()
        start += c.shape[1]
    columns = ([f"latent_{i}" for i in range(start)] if name == "ENCODED"
               else [f"{p.name}_{i}" for p in parts for i in range(p.stop - p.start)])
    return CodeTable(name, file, np.hstack(blocks), columns, parts, noise_info)


def code_tables(whole, groups: dict, slices: dict[str, list[int]], n_features: int,
                noise: CodeNoise, seed: int | None) -> list[CodeTable]:
    """The two code tables of a ``codes`` release: ENCODED (whole-table model) and
    GROUP_ENCODED (one model per feature group, codes side by side)."""
    return [code_table("ENCODED", "encoded", {"whole": whole},
                       {"whole": list(range(n_features))}, noise, seed),
            code_table("GROUP_ENCODED", "group_encoded", groups, slices, noise, seed,
                       first_index=1)]
