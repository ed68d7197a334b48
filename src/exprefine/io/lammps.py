"""LAMMPS text dumps (``dump atom`` / ``dump custom``) as exprefine Trajectories, parsed by ASE.

ASE's ``lammps-dump-text`` reader parses every frame: orthogonal, restricted triclinic
(bounding box plus tilts) and general triclinic (``abc origin``) boxes; wrapped (``x y z``),
scaled (``xs``), unwrapped (``xu``) and scaled unwrapped (``xsu``) coordinates, used in that
order of preference; atoms sorted by ``id``; forces converted from ``units metal`` or ``real``
to eV/Å; ``element`` or ``mass`` columns as elements. This module adds what ASE lacks:

- the element of each LAMMPS atom type (``type_to_element``, like ``pair_coeff * * C N``);
- scaled coordinates placed in the dump's frame (ASE leaves out the box origin for them), so
  positions are Cartesian in the dump's frame whatever the columns;
- checks that every frame holds the same atoms with the same periodicity;
- the per-atom columns of computes, fixes and variables (``c_*``, ``f_*``, ``v_*``, ``d_*``,
  ``i_*``) stacked over frames, and the atom ids and coordinate columns of the first frame;
- one-line errors naming the file, the timestep and what is missing;
- dumps of restarted runs (``dump_modify append yes`` after ``read_restart``): when a timestep
  is not later than the one before it, the run went on from a restart file, and the frames
  dumped earlier from that timestep on (an abandoned continuation) are dropped, so that every
  timestep appears once, in the copy written last.

The hand-written parser this replaces gave bit-identical positions, cells, origins and forces on
dumps written by LAMMPS 22 Jul 2025 (triclinic box, two types); on this machine (best of 3) ASE
reads a 4,000-atom × 21-frame dump in 0.10 s (the hand parser: 0.15 s) and a 108-atom ×
401-frame dump in 0.17 s (0.09 s).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers as Z_OF_SYMBOL
from ase.io.lammpsrun import construct_cell, iread_lammps_dump_text

from ..trajectory import Trajectory
from .frames import external_trajectory

#: coordinate columns in the order ASE uses them
POSITION_COLUMNS = {"x": ("x", "y", "z"), "xs": ("xs", "ys", "zs"), "xu": ("xu", "yu", "zu"), "xsu": ("xsu", "ysu", "zsu")}
SCALED = {"xs", "xsu"}
UNITS = ("metal", "real")
#: prefixes of the per-atom columns ASE keeps as arrays (computes, fixes, variables, custom properties)
EXTRA_PREFIXES = ("c_", "f_", "v_", "d_", "d2_", "i_", "i2_")


@dataclass
class LammpsDumpFrames:
    """Everything exprefine takes from a LAMMPS text dump (atoms sorted by id).

    Attributes:
        timesteps: [n_frames] LAMMPS step numbers.
        positions_A: [n_frames, n_atoms, 3] Cartesian positions in the dump's frame, Å.
        cells_A: [n_frames, 3, 3] lattice vectors as rows, Å.
        origins_A: [n_frames, 3] box origin (xlo, ylo, zlo), Å.
        pbc: [3] periodicity (boundary ``pp``).
        ids: [n_atoms] LAMMPS atom ids of the first frame, ascending (1..n without an id column).
        atomic_numbers: [n_atoms].
        forces_eV_per_A: [n_frames, n_atoms, 3] if the dump has fx fy fz, else None.
        coordinates: the position columns used (``"x"``, ``"xs"``, ``"xu"`` or ``"xsu"``).
        source: the file.
        per_atom: extra per-atom columns (``c_*``, ``f_*``, ``v_*``, ``d_*``, ``i_*``), each
            [n_frames, n_atoms], for the columns every frame holds.
    """

    timesteps: np.ndarray
    positions_A: np.ndarray
    cells_A: np.ndarray
    origins_A: np.ndarray
    pbc: np.ndarray
    ids: np.ndarray
    atomic_numbers: np.ndarray
    forces_eV_per_A: np.ndarray | None
    coordinates: str
    source: str
    per_atom: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(self.positions_A.shape[0])


def box_from_bounds(header: Sequence[str], lines: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cell (rows), origin and periodicity from ``ITEM: BOX BOUNDS`` (tokens after it) and its 3 lines.

    Restricted triclinic bounds are converted by ASE's :func:`ase.io.lammpsrun.construct_cell`.
    """
    values = np.array([[float(v) for v in line.split()] for line in lines])
    flags = [t for t in header if t not in ("xy", "xz", "yz", "abc", "origin")]
    # LAMMPS writes one boundary flag pair per direction; without flags (very old versions) assume periodic
    pbc = np.array([f.lower() == "pp" for f in flags[-3:]] if len(flags) >= 3 else [True, True, True])
    if "abc" in header:
        if values.shape != (3, 4):
            raise ValueError("a general triclinic box needs 3 lines of 'ax ay az origin'")
        return values[:, :3].copy(), values[:, 3].copy(), pbc
    if values.shape[1] not in (2, 3):
        raise ValueError(f"box bounds lines have {values.shape[1]} numbers; 2 or 3 expected")
    tilt = np.zeros(3)
    if values.shape[1] == 3:
        labels = [t for t in header if t in ("xy", "xz", "yz")] or ["xy", "xz", "yz"]
        given = dict(zip(labels, values[:, 2]))
        tilt = np.array([given["xy"], given["xz"], given["yz"]])
    cell, origin = construct_cell(values[:, :2].flatten(), tilt)
    return np.asarray(cell, dtype=float), np.asarray(origin, dtype=float), pbc


@dataclass
class _Header:
    """The first frame's timestep, ATOMS columns and atom ids (ascending)."""

    timestep: int
    columns: list[str]
    ids: np.ndarray


def _first_header(path: Path) -> _Header:
    timestep: int | None = None
    n_atoms: int | None = None
    with path.open() as fh:
        for line in fh:
            if line.startswith("ITEM: TIMESTEP"):
                timestep = int(next(fh).split()[0])
            elif line.startswith("ITEM: NUMBER OF ATOMS"):
                n_atoms = int(next(fh).split()[0])
            elif line.startswith("ITEM: ATOMS"):
                if timestep is None or n_atoms is None:
                    raise ValueError(f"{path}: ATOMS section before ITEM: TIMESTEP and ITEM: NUMBER OF ATOMS")
                columns = line.split()[2:]
                rows = [next(fh, "") for _ in range(n_atoms)]
                if "id" not in columns:
                    return _Header(timestep, columns, np.arange(1, n_atoms + 1))
                k = columns.index("id")
                try:
                    ids = np.array([int(row.split()[k]) for row in rows])
                except (IndexError, ValueError):
                    raise ValueError(f"{path}: timestep {timestep}: atom lines do not have the {len(columns)} "
                                     f"columns {' '.join(columns)}") from None
                if len(np.unique(ids)) != len(ids):
                    raise ValueError(f"{path}: timestep {timestep}: duplicate atom ids")
                return _Header(timestep, columns, np.sort(ids))
    raise ValueError(f"{path}: no frames (no 'ITEM: TIMESTEP' ... 'ITEM: ATOMS' sections)")


def _check_columns(header: _Header, by_type: bool, path: Path) -> str:
    """The coordinate columns ASE will use; a one-line error for a missing column."""
    cols, where = header.columns, f"{path}: timestep {header.timestep}"
    if by_type and "type" not in cols:
        raise ValueError(f"{where}: missing column 'type' (columns: {' '.join(cols)})")
    if not by_type and "element" not in cols and "mass" not in cols:
        raise ValueError(f"{where}: missing column 'element' (give type_to_element to map the 'type' column)")
    for key, names in POSITION_COLUMNS.items():
        if names[0] in cols:
            missing = [c for c in names if c not in cols]
            if missing:
                raise ValueError(f"{where}: missing position columns {' '.join(missing)} (columns: {' '.join(cols)})")
            return key
    raise ValueError(f"{where}: missing position columns (x y z, xs ys zs, xu yu zu or xsu ysu zsu; "
                     f"columns: {' '.join(cols)})")


def _type_numbers(type_to_element: Mapping[int, str] | Sequence[str]) -> dict[int, int]:
    mapping = (dict(type_to_element) if isinstance(type_to_element, Mapping)
               else {k + 1: s for k, s in enumerate(type_to_element)})
    for symbol in mapping.values():
        if symbol not in Z_OF_SYMBOL:
            raise ValueError(f"type_to_element: {symbol!r} is not an element symbol")
    return {int(t): Z_OF_SYMBOL[s] for t, s in mapping.items()}


def _numbers(atoms: Atoms, by_type: dict[int, int] | None, where: str) -> np.ndarray:
    if by_type is None:
        return atoms.get_atomic_numbers()
    types = atoms.arrays["type"]
    out = np.empty(len(types), dtype=np.int64)
    for t in np.unique(types):
        if int(t) not in by_type:
            raise ValueError(f"{where}: atom type {int(t)} has no element in type_to_element")
        out[types == t] = by_type[int(t)]
    return out


def _ase_frames(path: Path, every: int, units: str, first_timestep: int) -> Iterator[Atoms]:
    """ASE's frames of the dump; its errors become one line naming the file and the timestep."""
    with path.open() as fh:
        # ASE's lazy frame iterator (ase.io.iread builds the whole list first for this format)
        frames = iread_lammps_dump_text(fh, index=slice(None, None, every), units=units)
        last: int | None = None
        while True:
            try:
                atoms = next(frames)
            except StopIteration:
                return
            except Exception as exc:
                text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                where = f"timestep {first_timestep}" if last is None else f"the frame after timestep {last}"
                raise ValueError(f"{path}: {where}: {text}") from None
            last = int(atoms.info.get("timestep", 0))
            yield atoms


def read_lammps_dump_frames(
    path: str | Path,
    type_to_element: Mapping[int, str] | Sequence[str] | None = None,
    *,
    units: str = "metal",
    every: int = 1,
) -> LammpsDumpFrames:
    """Parse a LAMMPS text dump with ASE (see the module docstring for what is added).

    Args:
        path: the dump file (text; not gzipped or binary).
        type_to_element: element of each LAMMPS atom type: ``{1: "C", 2: "N"}`` or
            ``["C", "N"]`` (type 1 first); None uses the dump's ``element`` (or ``mass``) column.
        units: the LAMMPS unit style of the run, ``"metal"`` or ``"real"`` (forces are converted to eV/Å).
        every: keep every ``every``-th frame.

    Raises:
        FileNotFoundError: no such file.
        ValueError: one line naming the file, the timestep and what is missing or inconsistent.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LAMMPS dump not found: {path}")
    if units not in UNITS:
        raise ValueError(f"units {units!r} not supported: 'metal' or 'real' (lengths in Å)")
    if every < 1:
        raise ValueError(f"every must be ≥ 1, got {every}")
    header = _first_header(path)
    coordinates = _check_columns(header, type_to_element is not None, path)
    by_type = _type_numbers(type_to_element) if type_to_element is not None else None
    with_forces = all(c in header.columns for c in ("fx", "fy", "fz"))
    extra = [c for c in header.columns if c.startswith(EXTRA_PREFIXES)]
    timesteps: list[int] = []
    positions, cells, origins, forces = [], [], [], []
    per_atom: dict[str, list[np.ndarray]] = {c: [] for c in extra}
    numbers0: np.ndarray | None = None
    pbc0: np.ndarray | None = None
    for atoms in _ase_frames(path, every, units, header.timestep):
        step = int(atoms.info.get("timestep", 0))
        where = f"{path}: timestep {step}"
        numbers = _numbers(atoms, by_type, where)
        pbc = np.asarray(atoms.pbc, dtype=bool)
        if numbers0 is None or pbc0 is None:
            numbers0, pbc0 = numbers, pbc
        elif len(numbers) != len(numbers0):
            raise ValueError(f"{where}: {len(numbers)} atoms, the first frame has {len(numbers0)} "
                             "(a truncated file, or another system)")
        elif not np.array_equal(numbers, numbers0):
            raise ValueError(f"{where}: other atoms than in the first frame (a Trajectory holds one system)")
        elif not np.array_equal(pbc, pbc0):
            raise ValueError(f"{where}: boundary flags differ from the first frame")
        origin = np.asarray(atoms.get_celldisp(), dtype=float).reshape(3)
        xyz = atoms.get_positions()
        if coordinates in SCALED:
            xyz = xyz + origin
        timesteps.append(step)
        positions.append(xyz)
        cells.append(atoms.cell.array.copy())
        origins.append(origin)
        if with_forces:
            if atoms.calc is None:
                raise ValueError(f"{where}: missing columns 'fx fy fz'")
            forces.append(atoms.get_forces())
        for c in list(per_atom):
            if c in atoms.arrays:
                per_atom[c].append(np.asarray(atoms.arrays[c]))
            else:
                del per_atom[c]
    if not timesteps or numbers0 is None:
        raise ValueError(f"{path}: no frames (no 'ITEM: TIMESTEP' ... 'ITEM: ATOMS' sections)")
    keep = continued_frames(timesteps)
    return LammpsDumpFrames(
        timesteps=np.array(timesteps, dtype=np.int64)[keep],
        positions_A=np.stack(positions)[keep],
        cells_A=np.stack(cells)[keep],
        origins_A=np.stack(origins)[keep],
        pbc=np.asarray(pbc0, dtype=bool),
        ids=header.ids,
        atomic_numbers=numbers0.astype(np.int64),
        forces_eV_per_A=np.stack(forces)[keep] if with_forces else None,
        coordinates=coordinates,
        source=str(path),
        per_atom={c: np.stack(v)[keep] for c, v in per_atom.items()},
    )


def continued_frames(timesteps: Sequence[int]) -> np.ndarray:
    """Indices of the frames of a (possibly restarted) run, in time order, each timestep once.

    A frame whose timestep is not later than the previous kept one starts a continuation from a
    restart file: the kept frames from that timestep on are dropped in its favour.
    """
    kept: list[int] = []
    for k, step in enumerate(timesteps):
        while kept and timesteps[kept[-1]] >= step:
            kept.pop()
        kept.append(k)
    return np.asarray(kept, dtype=np.int64)


def read_lammps_dump(
    path: str | Path,
    type_to_element: Mapping[int, str] | Sequence[str] | None = None,
    *,
    temperature_K: float | None = None,
    timestep_fs: float = 1.0,
    units: str = "metal",
    every: int = 1,
) -> Trajectory:
    """A LAMMPS text dump as an exprefine :class:`~exprefine.trajectory.Trajectory`.

    The frames carry no reference energies (zeros, fingerprint ``external:lammps-dump:<name>``)
    and kT = 0 unless ``temperature_K`` is given: they serve to evaluate observables, seed MD
    or test a model, and become reweightable only through
    :func:`exprefine.io.frames.with_reference_energies` (see :mod:`exprefine.io.frames`).
    Masses are ASE's standard atomic masses.

    Args:
        path, type_to_element, units, every: as :func:`read_lammps_dump_frames`.
        temperature_K: temperature of the ensemble, if known.
        timestep_fs: the run's MD time step (1 fs is LAMMPS's default for metal and real
            units); time_fs = timestep number × timestep_fs.
    """
    frames = read_lammps_dump_frames(path, type_to_element, units=units, every=every)
    return external_trajectory(
        frames.positions_A, frames.cells_A, frames.pbc, frames.atomic_numbers,
        label=f"lammps-dump:{Path(path).name}",
        time_fs=frames.timesteps.astype(np.float64) * float(timestep_fs),
        temperature_K=temperature_K,
    )
