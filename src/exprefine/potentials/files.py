"""Load a user's MLIP file by its kind: MACE ``.model``, DeePMD checkpoint ``.pt`` or frozen ``.pth``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import Potential
from .deepmd import DeepmdPotential
from .mace import MacePotential

#: File suffixes understood by :func:`load_model_file` and the adapter each one selects.
MODEL_SUFFIXES = {".model": "MACE (mace-torch)", ".pt": "DeePMD-kit checkpoint", ".pth": "DeePMD-kit frozen model"}


def load_model_file(path: str | Path, *, trainable: Any = "none", **kwargs: Any) -> Potential:
    """The exprefine Potential of an MLIP file, chosen by suffix (:data:`MODEL_SUFFIXES`).

    Args:
        path: the model file.
        trainable: which parameters train (adapter name patterns; "none" for evaluation).
        **kwargs: passed to the adapter's ``from_file`` (e.g. ``dtype`` for MACE).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a suffix no adapter reads (one line naming the file and the suffixes).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file {path}")
    suffix = path.suffix.lower()
    if suffix == ".model":
        return MacePotential.from_file(path, trainable=trainable, **kwargs)
    if suffix in (".pt", ".pth"):
        return DeepmdPotential.from_file(path, trainable=trainable, **kwargs)
    known = ", ".join(f"{s} ({kind})" for s, kind in MODEL_SUFFIXES.items())
    raise ValueError(f"{path}: unknown model file kind {suffix or '(no suffix)'}; exprefine reads {known}")


__all__ = ["MODEL_SUFFIXES", "load_model_file"]
