"""The potential a LAMMPS run uses: from an exprefine config (plus a run's checkpoint) or a model file."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from ..builders import build_potential, load_potential_state
from ..config import load_config
from ..potentials.base import Potential
from ..potentials.files import MODEL_SUFFIXES, load_model_file

#: suffixes read as exprefine YAML configs; anything else is a model file (:data:`MODEL_SUFFIXES`)
CONFIG_SUFFIXES = (".yaml", ".yml")


def load_potential(
    source: str | Path,
    *,
    checkpoint: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> Potential:
    """The potential of a config (all its terms, e.g. a refined MACE plus a spline correction) or a model file.

    Args:
        source: an exprefine YAML config, or a MACE ``.model`` / DeePMD ``.pt``/``.pth`` file
            (a refinement writes ``refined.model`` or ``refined_deepmd.pth`` into its run directory).
        checkpoint: with a config: a checkpoint or ``final_model.pt`` whose parameters to load
            (the refined model with every term of the config).
        overrides: with a config: ``KEY=VALUE`` overrides, as ``--set``.

    Raises:
        FileNotFoundError: no such config, model or checkpoint file.
        ValueError: a checkpoint or overrides given with a model file; a file of unknown kind.
    """
    path = Path(source)
    if path.suffix.lower() in CONFIG_SUFFIXES:
        cfg = load_config(path, list(overrides))
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        potential = build_potential(cfg)
        if checkpoint is not None:
            if not Path(checkpoint).is_file():
                raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
            load_potential_state(potential, checkpoint)
        return potential
    if checkpoint is not None or overrides:
        raise ValueError(f"{path}: --checkpoint and --set go with an exprefine config (.yaml), not a model file")
    if not path.exists():
        kinds = ", ".join([*CONFIG_SUFFIXES, *MODEL_SUFFIXES])
        raise FileNotFoundError(f"model or config not found: {path} (exprefine reads {kinds})")
    return load_model_file(path)


def potential_dtype(potential: Potential) -> torch.dtype:
    """The floating dtype of the potential's parameters (float64 when it has none)."""
    for tensor in [*potential.parameters(), *potential.buffers()]:
        if tensor.dtype.is_floating_point:
            return tensor.dtype
    return torch.float64
