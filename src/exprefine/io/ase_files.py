"""Reading any file ASE reads, with one-line errors that name the file."""

from __future__ import annotations

from pathlib import Path

from ase import Atoms
from ase.io import read


def read_ase_frames(path: str | Path, index: str | int | slice = ":", what: str = "file") -> list[Atoms]:
    """The frames of ``path`` selected by ASE's ``index``, as a list.

    Args:
        what: what the file is, for the message when it does not exist ("trajectory file", ...).

    Raises:
        FileNotFoundError: no such file (one line naming it).
        ValueError: ASE could not read it (one line naming the file and ASE's reason).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        frames = read(str(path), index=index)
    except Exception as exc:  # ASE raises many kinds; one line naming the file
        raise ValueError(f"could not read {path}: {exc}") from exc
    return frames if isinstance(frames, list) else [frames]
