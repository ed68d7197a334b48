"""LAMMPS text dumps (``dump atom`` / ``dump custom``) as exprefine Trajectories.

The box: for orthogonal boxes ``ITEM: BOX BOUNDS pp pp pp`` with lines ``lo hi``; for
restricted triclinic boxes ``ITEM: BOX BOUNDS xy xz yz pp pp pp`` with lines
``lo_bound hi_bound tilt``, where LAMMPS writes the bounding box of the tilted cell:

    xlo = xlo_bound − min(0, xy, xz, xy+xz)    xhi = xhi_bound − max(0, xy, xz, xy+xz)
    ylo = ylo_bound − min(0, yz)               yhi = yhi_bound − max(0, yz)

and the lattice vectors (rows) are a = (xhi−xlo, 0, 0), b = (xy, yhi−ylo, 0),
c = (xz, yz, zhi−zlo), origin (xlo, ylo, zlo). General triclinic boxes
(``ITEM: BOX BOUNDS abc origin``) give a, b, c and the origin directly.

Coordinates: ``x y z`` (wrapped), ``xu yu zu`` (unwrapped), ``xs ys zs`` (scaled) or
``xsu ysu zsu`` (scaled unwrapped); scaled ones are fractional coordinates of the (tilted)
cell, r = origin + s·[a; b; c]. Positions are returned as Cartesian coordinates in the
dump's frame (the origin is not subtracted). Atoms are sorted by ``id``; every frame must
hold the same atoms.

Only ``units metal`` and ``units real`` are read (lengths in Å in both).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

from ..trajectory import Trajectory
from ..units import kJ_PER_MOL_IN_eV
from .frames import external_trajectory

POSITION_COLUMNS = {
    "x": ("x", "y", "z"),
    "xu": ("xu", "yu", "zu"),
    "xs": ("xs", "ys", "zs"),
    "xsu": ("xsu", "ysu", "zsu"),
}
SCALED = {"xs", "xsu"}
#: force unit of each supported LAMMPS unit style, in eV/Å
FORCE_UNIT_eV_PER_A = {"metal": 1.0, "real": 4.184 * kJ_PER_MOL_IN_eV}


@dataclass
class LammpsDumpFrames:
    """Everything exprefine takes from a LAMMPS text dump (atoms sorted by id).

    Attributes:
        timesteps: [n_frames] LAMMPS step numbers.
        positions_A: [n_frames, n_atoms, 3] Cartesian positions, Å.
        cells_A: [n_frames, 3, 3] lattice vectors as rows, Å.
        origins_A: [n_frames, 3] box origin (xlo, ylo, zlo), Å.
        pbc: [3] periodicity (boundary ``pp``).
        ids: [n_atoms] LAMMPS atom ids, ascending.
        atomic_numbers: [n_atoms].
        forces_eV_per_A: [n_frames, n_atoms, 3] if the dump has fx fy fz, else None.
        coordinates: the position columns used (``"x"``, ``"xu"``, ``"xs"`` or ``"xsu"``).
        source: the file.
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

    @property
    def n_frames(self) -> int:
        return int(self.positions_A.shape[0])


def box_from_bounds(header: Sequence[str], lines: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cell (rows), origin and periodicity from ``ITEM: BOX BOUNDS`` (tokens after it) and its 3 lines."""
    values = np.array([[float(v) for v in line.split()] for line in lines])
    flags = [t for t in header if t not in ("xy", "xz", "yz", "abc", "origin")]
    # LAMMPS writes one boundary flag pair per direction; without flags (very old versions) assume periodic
    pbc = np.array([f.lower() == "pp" for f in flags[-3:]] if len(flags) >= 3 else [True, True, True])
    if "abc" in header:
        if values.shape != (3, 4):
            raise ValueError("a general triclinic box needs 3 lines of 'ax ay az origin'")
        return values[:, :3].copy(), values[:, 3].copy(), pbc
    if values.shape[1] == 2:
        lo, hi = values[:, 0], values[:, 1]
        return np.diag(hi - lo), lo.copy(), pbc
    if values.shape[1] != 3:
        raise ValueError(f"box bounds lines have {values.shape[1]} numbers; 2 or 3 expected")
    labels = [t for t in header if t in ("xy", "xz", "yz")] or ["xy", "xz", "yz"]
    tilt = dict(zip(labels, values[:, 2]))
    xy, xz, yz = tilt["xy"], tilt["xz"], tilt["yz"]
    xlo = values[0, 0] - min(0.0, xy, xz, xy + xz)
    xhi = values[0, 1] - max(0.0, xy, xz, xy + xz)
    ylo = values[1, 0] - min(0.0, yz)
    yhi = values[1, 1] - max(0.0, yz)
    zlo, zhi = values[2, 0], values[2, 1]
    cell = np.array([[xhi - xlo, 0.0, 0.0], [xy, yhi - ylo, 0.0], [xz, yz, zhi - zlo]])
    return cell, np.array([xlo, ylo, zlo]), pbc


@dataclass
class _RawFrame:
    timestep: int
    cell: np.ndarray
    origin: np.ndarray
    pbc: np.ndarray
    columns: list[str]
    rows: list[str]


def _next(lines: Iterator[str], path: Path, timestep: int | None) -> str:
    try:
        return next(lines)
    except StopIteration:
        where = f"timestep {timestep}" if timestep is not None else "the header"
        raise ValueError(f"{path}: truncated at {where}") from None


def _raw_frames(path: Path) -> Iterator[_RawFrame]:
    """The sections of each frame, in file order (atom lines unparsed)."""
    with path.open() as fh:
        lines = iter(fh)
        timestep: int | None = None
        n_atoms = cell = origin = pbc = None
        for line in lines:
            if not line.startswith("ITEM:"):
                continue
            item = line[5:].strip()
            if item.startswith("TIMESTEP"):
                timestep = int(_next(lines, path, timestep).split()[0])
                n_atoms = cell = origin = pbc = None
            elif item.startswith("NUMBER OF ATOMS"):
                n_atoms = int(_next(lines, path, timestep).split()[0])
            elif item.startswith("BOX BOUNDS"):
                box_lines = [_next(lines, path, timestep) for _ in range(3)]
                try:
                    cell, origin, pbc = box_from_bounds(item.split()[2:], box_lines)
                except ValueError as exc:
                    raise ValueError(f"{path}: timestep {timestep}: {exc}") from None
            elif item.startswith("ATOMS"):
                if timestep is None or n_atoms is None or cell is None or origin is None or pbc is None:
                    missing = "TIMESTEP" if timestep is None else "NUMBER OF ATOMS" if n_atoms is None else "BOX BOUNDS"
                    raise ValueError(f"{path}: timestep {timestep}: ATOMS section before ITEM: {missing}")
                rows = [_next(lines, path, timestep) for _ in range(n_atoms)]
                yield _RawFrame(timestep, cell, origin, pbc, item.split()[1:], rows)


def _element_numbers(
    frame: _RawFrame,
    table: np.ndarray,
    type_to_element: Mapping[int, str] | Sequence[str] | None,
    path: Path,
) -> np.ndarray:
    from ase.data import atomic_numbers as z_of

    cols = frame.columns
    if type_to_element is not None:
        if "type" not in cols:
            raise ValueError(f"{path}: timestep {frame.timestep}: missing column 'type' (columns: {' '.join(cols)})")
        mapping = (dict(type_to_element) if isinstance(type_to_element, Mapping)
                   else {k + 1: s for k, s in enumerate(type_to_element)})
        types = table[:, cols.index("type")].astype(np.int64)
        out = np.empty(len(types), dtype=np.int64)
        for t in np.unique(types):
            symbol = mapping.get(int(t))
            if symbol is None:
                raise ValueError(f"{path}: timestep {frame.timestep}: atom type {int(t)} has no element in type_to_element")
            if symbol not in z_of:
                raise ValueError(f"type_to_element: {symbol!r} is not an element symbol")
            out[types == t] = z_of[symbol]
        return out
    if "element" not in cols:
        raise ValueError(f"{path}: timestep {frame.timestep}: missing column 'element' "
                         "(give type_to_element to map the 'type' column)")
    symbols = table[:, cols.index("element")]
    unknown = sorted(set(symbols) - set(z_of))
    if unknown:
        raise ValueError(f"{path}: timestep {frame.timestep}: unknown element symbols {unknown}")
    return np.array([z_of[s] for s in symbols], dtype=np.int64)


def _parse_frame(
    frame: _RawFrame,
    path: Path,
    type_to_element: Mapping[int, str] | Sequence[str] | None,
    coordinates: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, str]:
    """(ids, atomic numbers, positions, forces or None, coordinates used), sorted by id."""
    cols = frame.columns
    table = np.array([row.split() for row in frame.rows], dtype=object)
    if table.ndim != 2 or table.shape[1] != len(cols):
        raise ValueError(f"{path}: timestep {frame.timestep}: atom lines do not have the {len(cols)} columns "
                         f"{' '.join(cols)}")
    if "id" not in cols:
        raise ValueError(f"{path}: timestep {frame.timestep}: missing column 'id' (columns: {' '.join(cols)})")
    if coordinates == "auto":
        found = [k for k, names in POSITION_COLUMNS.items() if all(c in cols for c in names)]
        if not found:
            raise ValueError(f"{path}: timestep {frame.timestep}: missing position columns "
                             f"(x y z, xu yu zu, xs ys zs or xsu ysu zsu; columns: {' '.join(cols)})")
        coordinates = found[0]
    names = POSITION_COLUMNS[coordinates]
    for c in names:
        if c not in cols:
            raise ValueError(f"{path}: timestep {frame.timestep}: missing column {c!r} (columns: {' '.join(cols)})")
    ids = table[:, cols.index("id")].astype(np.int64)
    order = np.argsort(ids, kind="stable")
    table = table[order]
    ids = ids[order]
    if len(np.unique(ids)) != len(ids):
        raise ValueError(f"{path}: timestep {frame.timestep}: duplicate atom ids")
    numbers = _element_numbers(frame, table, type_to_element, path)
    xyz = table[:, [cols.index(c) for c in names]].astype(np.float64)
    if coordinates in SCALED:
        xyz = frame.origin + xyz @ frame.cell
    forces = None
    if all(c in cols for c in ("fx", "fy", "fz")):
        forces = table[:, [cols.index(c) for c in ("fx", "fy", "fz")]].astype(np.float64)
    return ids, numbers, xyz, forces, coordinates


def read_lammps_dump_frames(
    path: str | Path,
    type_to_element: Mapping[int, str] | Sequence[str] | None = None,
    *,
    units: str = "metal",
    coordinates: str = "auto",
    every: int = 1,
) -> LammpsDumpFrames:
    """Parse a LAMMPS text dump (see the module docstring for the box and coordinate conventions).

    Args:
        path: the dump file (text; not gzipped or binary).
        type_to_element: element of each LAMMPS atom type: ``{1: "C", 2: "N"}`` or
            ``["C", "N"]`` (type 1 first); None uses the dump's ``element`` column.
        units: the LAMMPS unit style of the run, ``"metal"`` or ``"real"`` (forces are converted to eV/Å).
        coordinates: which position columns to use, ``"x"``, ``"xu"``, ``"xs"``, ``"xsu"`` or
            ``"auto"`` (the first of these present).
        every: keep every ``every``-th frame.

    Raises:
        ValueError: one line naming the file, the timestep and what is missing or inconsistent.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LAMMPS dump not found: {path}")
    if units not in FORCE_UNIT_eV_PER_A:
        raise ValueError(f"units {units!r} not supported: 'metal' or 'real' (lengths in Å)")
    if coordinates != "auto" and coordinates not in POSITION_COLUMNS:
        raise ValueError(f"coordinates must be 'auto' or one of {sorted(POSITION_COLUMNS)}, got {coordinates!r}")
    if every < 1:
        raise ValueError(f"every must be ≥ 1, got {every}")
    timesteps: list[int] = []
    positions: list[np.ndarray] = []
    cells: list[np.ndarray] = []
    origins: list[np.ndarray] = []
    forces: list[np.ndarray] = []
    ids0: np.ndarray | None = None
    numbers0: np.ndarray | None = None
    pbc0: np.ndarray | None = None
    chosen = coordinates
    for k, frame in enumerate(_raw_frames(path)):
        if k % every:
            continue
        ids, numbers, xyz, f, chosen = _parse_frame(frame, path, type_to_element, chosen)
        if ids0 is None or numbers0 is None:
            ids0, numbers0, pbc0 = ids, numbers, frame.pbc
        elif not (np.array_equal(ids, ids0) and np.array_equal(numbers, numbers0)):
            raise ValueError(f"{path}: timestep {frame.timestep}: other atoms than in the first frame "
                             "(a Trajectory holds one system)")
        elif pbc0 is None or not np.array_equal(frame.pbc, pbc0):
            raise ValueError(f"{path}: timestep {frame.timestep}: boundary flags differ from the first frame")
        if forces and f is None:
            raise ValueError(f"{path}: timestep {frame.timestep}: missing columns 'fx fy fz'")
        timesteps.append(frame.timestep)
        positions.append(xyz)
        cells.append(frame.cell)
        origins.append(frame.origin)
        if f is not None:
            forces.append(f * FORCE_UNIT_eV_PER_A[units])
    if not timesteps or ids0 is None or numbers0 is None:
        raise ValueError(f"{path}: no frames (no 'ITEM: TIMESTEP' ... 'ITEM: ATOMS' sections)")
    return LammpsDumpFrames(
        timesteps=np.array(timesteps, dtype=np.int64),
        positions_A=np.stack(positions),
        cells_A=np.stack(cells),
        origins_A=np.stack(origins),
        pbc=np.asarray(pbc0, dtype=bool),
        ids=ids0,
        atomic_numbers=numbers0,
        forces_eV_per_A=np.stack(forces) if len(forces) == len(timesteps) else None,
        coordinates=chosen,
        source=str(path),
    )


def read_lammps_dump(
    path: str | Path,
    type_to_element: Mapping[int, str] | Sequence[str] | None = None,
    *,
    temperature_K: float | None = None,
    timestep_fs: float = 1.0,
    units: str = "metal",
    coordinates: str = "auto",
    every: int = 1,
) -> Trajectory:
    """A LAMMPS text dump as an exprefine :class:`~exprefine.trajectory.Trajectory`.

    The frames carry no reference energies (zeros, fingerprint ``external:lammps-dump:<name>``)
    and kT = 0 unless ``temperature_K`` is given: they serve to evaluate observables, seed MD
    or test a model, and become reweightable only through
    :func:`exprefine.io.frames.with_reference_energies` (see :mod:`exprefine.io.frames`).
    Masses are ASE's standard atomic masses.

    Args:
        path, type_to_element, units, coordinates, every: as :func:`read_lammps_dump_frames`.
        temperature_K: temperature of the ensemble, if known.
        timestep_fs: the run's MD time step (1 fs is LAMMPS's default for metal and real
            units); time_fs = timestep number × timestep_fs.
    """
    frames = read_lammps_dump_frames(path, type_to_element, units=units, coordinates=coordinates, every=every)
    return external_trajectory(
        frames.positions_A, frames.cells_A, frames.pbc, frames.atomic_numbers,
        label=f"lammps-dump:{Path(path).name}",
        time_fs=frames.timesteps.astype(np.float64) * float(timestep_fs),
        temperature_K=temperature_K,
    )
