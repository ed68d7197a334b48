"""Messages of dependencies: drop those that say nothing to a user, show the others in one line.

* :func:`silence_dependency_noise` filters log records that carry no information for a user of
  exprefine: torch logs "Triton not available, find_triton_kernels = []" (about ten times, as
  ``W1205 ... torch/_library/triton.py:53]`` lines) whenever DeePMD-kit registers its custom
  operators on a machine without Triton (every CPU machine); Triton matters only for GPU kernels
  that exprefine does not use. Only these exact messages are dropped; every other record of the
  same loggers passes. Called when deepmd is imported and by the command line, never at import.
* :func:`warning_line` is how the command line shows a Python warning: one plain line (no
  source path, no code line), naming the package it came from when it is not exprefine.
"""

from __future__ import annotations

import logging
from pathlib import Path

#: logger name → beginnings of the messages of that logger that are dropped
NOISE: dict[str, tuple[str, ...]] = {
    "torch._library.triton": ("Triton not available",),
}

_PACKAGE_DIR = Path(__file__).resolve().parent


class DropMessages(logging.Filter):
    """A logging filter that drops records whose message starts with one of ``prefixes``."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


def silence_dependency_noise() -> None:
    """Install the filters of :data:`NOISE` (once; calling again changes nothing)."""
    for name, prefixes in NOISE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropMessages) for f in logger.filters):
            logger.addFilter(DropMessages(prefixes))


def warning_line(message: Warning | str, category: type[Warning], filename: str) -> str:
    """A warning as one line: ``warning: <message>`` for exprefine's own (a RuntimeWarning of the
    refiner says what it did), ``warning from <package> (<Category>): <first line>`` for a dependency's."""
    text = str(message).strip().splitlines()[0] if str(message).strip() else category.__name__
    try:
        ours = Path(filename).resolve().is_relative_to(_PACKAGE_DIR)
    except (OSError, ValueError):
        ours = False
    if ours:
        return f"warning: {text}"
    parts = Path(filename).parts
    package = next((parts[k + 1] for k in range(len(parts) - 1) if parts[k] in ("site-packages", "dist-packages")),
                   Path(filename).stem)
    return f"warning from {package} ({category.__name__}): {text}"
