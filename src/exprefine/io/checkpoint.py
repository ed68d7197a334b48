"""Checkpoints: state_dicts, plain numbers and the resolved config — never a pickled module.

Files are written to a temporary name and renamed, so a run killed while writing
leaves the previous checkpoint intact. They load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path
from typing import Any

import numpy
import torch
from torch import nn

from ..atomic import atomic_path
from ..trajectory import state_fingerprint

CHECKPOINT_FORMAT = "exprefine.checkpoint/1"
#: a potential's state stored as its trainable tensors plus a fingerprint of the frozen rest
TRAINABLE_STATE_FORMAT = "exprefine.trainable_state/1"


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
    with atomic_path(path) as tmp:
        torch.save(obj, str(tmp))


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


def trainable_state_names(module: nn.Module) -> set[str]:
    """The state_dict keys of ``module``'s parameters that require a gradient."""
    keys = module.state_dict().keys()
    return {name for name, p in module.named_parameters(remove_duplicate=False) if p.requires_grad and name in keys}


def compact_state(module: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """A state_dict of ``module`` for a checkpoint: copies of its trainable tensors and a fingerprint
    of everything else, which a refinement never changes (a frozen DeePMD or MACE model is
    megabytes; two learned D3 scales are 16 bytes). :func:`full_state` rebuilds it."""
    names = trainable_state_names(module)
    return {
        "format": TRAINABLE_STATE_FORMAT,
        "trainable": {name: state[name].detach().clone() for name in sorted(names)},
        "frozen_fingerprint": state_fingerprint({k: v for k, v in state.items() if k not in names}),
    }


def full_state(module: nn.Module, stored: dict[str, Any], source: str | Path) -> dict[str, torch.Tensor]:
    """The state_dict that ``stored`` describes: a :func:`compact_state` completed with ``module``'s
    own frozen tensors (after checking that they are the ones it was written with), or a full
    state_dict as earlier versions wrote it, returned unchanged."""
    if stored.get("format") != TRAINABLE_STATE_FORMAT:
        return stored
    current = module.state_dict()
    trainable = stored["trainable"]
    unknown = sorted(set(trainable) - set(current))
    if unknown:
        raise ValueError(f"{source}: the model has no parameter {unknown[0]!r} (another model or config?)")
    frozen = {k: v for k, v in current.items() if k not in trainable}
    if state_fingerprint(frozen) != stored["frozen_fingerprint"]:
        raise ValueError(f"{source}: the frozen part of the model differs from the one the checkpoint was written "
                         f"with (model file or trainable parameters changed?)")
    return {k: trainable[k] if k in trainable else v for k, v in current.items()}
