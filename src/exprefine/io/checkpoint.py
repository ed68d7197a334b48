"""Checkpoints: state_dicts, plain numbers and the resolved config — never a pickled module.

Files are written to a temporary name and renamed, so a run killed while writing
leaves the previous checkpoint intact. They load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

import numpy
import torch

CHECKPOINT_FORMAT = "exprefine.checkpoint/1"


def versions() -> dict[str, str]:
    """Versions of the packages that produced a checkpoint."""
    out = {
        "exprefine": _exprefine_version(),
        "torch": str(torch.__version__),
        "numpy": str(numpy.__version__),
        "python": platform.python_version(),
    }
    try:
        import ase

        out["ase"] = str(ase.__version__)
    except ImportError:  # pragma: no cover
        pass
    return out


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, str(tmp))
    os.replace(tmp, path)


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write a checkpoint; ``payload`` holds tensors, state_dicts and plain Python data only."""
    atomic_save({"format": CHECKPOINT_FORMAT, "versions": versions(), **payload}, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (safe loader, no code executed)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        data = torch.load(str(path), weights_only=True, map_location="cpu")
    except Exception as exc:
        raise ValueError(f"{path} is not a readable exprefine checkpoint: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an exprefine checkpoint (format {CHECKPOINT_FORMAT} expected)")
    return data


def state_to_plain(md: Any) -> dict[str, Any]:
    """The tensors of a State (or of an MDState's state) for a checkpoint; ``State(**plain)`` rebuilds it."""
    state = md.state if hasattr(md, "state") else md
    return {
        "positions": state.positions.detach().clone(),
        "cell": state.cell.detach().clone(),
        "pbc": state.pbc.clone(),
        "atomic_numbers": state.atomic_numbers.clone(),
        "masses": state.masses.detach().clone(),
        "system_idx": state.system_idx.clone(),
        "velocities": None if state.velocities is None else state.velocities.detach().clone(),
    }


def _exprefine_version() -> str:
    try:
        return importlib.metadata.version("exprefine")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"
