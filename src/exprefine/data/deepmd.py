"""DeePMD-kit data systems (``deepmd/npy`` and ``deepmd/raw``) through the dpdata package.

A DeePMD *system* is a folder with ``type.raw`` (type of each atom), ``type_map.raw`` (element
of each type) and frames, either as ``set.*/{coord,box,energy,force,virial}.npy`` (npy) or
``{coord,box,energy,force,virial}.raw`` (raw). All frames of one system have the same atoms in
the same order; a ``nopbc`` file marks non-periodic systems. DeePMD stores the virial W in eV;
exprefine's stress (ASE convention) is −W/V.

dpdata is imported only when these functions run.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .dft import DFTDataset, concatenate_datasets


def _import_dpdata():
    try:
        import dpdata
    except ImportError as exc:  # pragma: no cover - the extra is installed in CI
        raise ImportError(f"DeePMD data need dpdata: pip install 'exprefine[deepmd]' ({exc})") from exc
    return dpdata


def _system_format(folder: Path) -> str:
    if any(p.is_dir() for p in folder.glob("set.*")):
        return "deepmd/npy"
    if (folder / "coord.raw").is_file():
        return "deepmd/raw"
    raise ValueError(f"{folder} has type.raw but neither set.*/ folders (deepmd/npy) nor coord.raw (deepmd/raw)")


def find_deepmd_systems(path: str | Path) -> list[Path]:
    """``path`` itself if it is a DeePMD system (has ``type.raw``), else every system below it, sorted."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"DeePMD data folder not found: {path}")
    if (path / "type.raw").is_file():
        return [path]
    systems = sorted(p.parent for p in path.rglob("type.raw"))
    if not systems:
        raise ValueError(f"{path} holds no DeePMD system (no type.raw in it or below it)")
    return systems


def _dataset_from_dpdata(system, source: str) -> DFTDataset:
    """One dpdata LabeledSystem as a DFTDataset."""
    from ase.data import atomic_numbers as z_of

    data = system.data
    names = list(data["atom_names"])
    unknown = [n for n in names if n not in z_of]
    if unknown:
        raise ValueError(f"{source}: type names {unknown} are not element symbols; "
                         "pass type_map=[...] (the element of each type)")
    type_z = np.array([z_of[n] for n in names], dtype=np.int64)
    numbers = type_z[np.asarray(data["atom_types"], dtype=np.int64)]
    coords = np.asarray(data["coords"], dtype=np.float64)
    n_frames, n_atoms = coords.shape[:2]
    if "energies" not in data or "forces" not in data:
        missing = "energy" if "energies" not in data else "force"
        raise ValueError(f"{source}: no {missing} labels")
    nopbc = bool(data.get("nopbc", False))
    cells = np.asarray(data["cells"], dtype=np.float64).reshape(n_frames, 3, 3)
    if nopbc:
        cells = np.zeros_like(cells)
    stress = np.zeros((n_frames, 3, 3))
    has_stress = np.zeros(n_frames, dtype=bool)
    if "virials" in data and not nopbc:
        virials = np.asarray(data["virials"], dtype=np.float64).reshape(n_frames, 3, 3)
        volumes = np.abs(np.linalg.det(cells))
        stress = -virials / volumes[:, None, None]
        has_stress[:] = True
    return DFTDataset(
        positions_A=torch.as_tensor(coords.reshape(-1, 3)),
        atomic_numbers=torch.as_tensor(np.tile(numbers, n_frames)),
        atoms_per_frame=torch.full((n_frames,), n_atoms, dtype=torch.long),
        cells_A=torch.as_tensor(cells),
        pbc=torch.full((n_frames, 3), not nopbc, dtype=torch.bool),
        energies_eV=torch.as_tensor(np.asarray(data["energies"], dtype=np.float64).reshape(n_frames)),
        forces_eV_per_A=torch.as_tensor(np.asarray(data["forces"], dtype=np.float64).reshape(-1, 3)),
        stress_eV_per_A3=torch.as_tensor(stress),
        has_stress=torch.as_tensor(has_stress),
        source=source,
    )


def read_deepmd(path: str | Path, *, fmt: str = "auto", type_map: Sequence[str] | None = None) -> DFTDataset:
    """Read one DeePMD system or every system below a folder.

    Args:
        path: a system folder (with ``type.raw``) or a folder holding several systems
            (found recursively; read in sorted path order, frames of each system in order).
        fmt: ``"deepmd/npy"``, ``"deepmd/raw"`` or ``"auto"`` (per system: npy if ``set.*`` exists).
        type_map: element symbol of each DeePMD type, for systems without ``type_map.raw``.

    Returns:
        The frames; virials (eV) become stress = −W/V; ``nopbc`` systems become non-periodic
        frames with zero cells and no stress.
    """
    if fmt not in ("auto", "deepmd/npy", "deepmd/raw"):
        raise ValueError(f"fmt must be 'auto', 'deepmd/npy' or 'deepmd/raw', got {fmt!r}")
    dpdata = _import_dpdata()
    parts = []
    for folder in find_deepmd_systems(path):
        system_fmt = _system_format(folder) if fmt == "auto" else fmt
        try:
            system = dpdata.LabeledSystem(str(folder), fmt=system_fmt,
                                          type_map=list(type_map) if type_map is not None else None)
        except Exception as exc:  # dpdata raises many kinds; one line naming the folder
            raise ValueError(f"could not read DeePMD system {folder} ({system_fmt}): {exc}") from exc
        parts.append(_dataset_from_dpdata(system, str(folder)))
    return concatenate_datasets(parts, source=str(path))


def _formula(numbers: Sequence[int]) -> str:
    from ase.data import chemical_symbols

    counts: dict[int, int] = {}
    for z in numbers:
        counts[int(z)] = counts.get(int(z), 0) + 1
    return "".join(f"{chemical_symbols[z]}{c}" for z, c in sorted(counts.items()))


def write_deepmd(
    dataset: DFTDataset,
    path: str | Path,
    *,
    fmt: str = "deepmd/npy",
    set_size: int = 5000,
    overwrite: bool = False,
) -> list[Path]:
    """Write the frames as DeePMD systems that ``dp train`` (``"systems": [path]``) reads.

    Frames with the same atoms in the same order and the same periodicity form one system,
    written to ``path/NNN_<formula>`` (NNN numbers the systems in order of their first frame);
    every system shares one ``type_map.raw`` (the data set's elements by atomic number).
    Float data are written in float64. Stress becomes the virial W = −V·stress (eV); a system
    whose frames do not all have stress is written without virials.

    Args:
        dataset: the frames; each must be fully periodic or fully non-periodic.
        path: output folder; must be empty or absent unless ``overwrite`` (which deletes it first).
        fmt: ``"deepmd/npy"`` or ``"deepmd/raw"``.
        set_size: frames per ``set.*`` folder (npy).

    Returns:
        The system folders written, in order. Reading ``path`` back with :func:`read_deepmd`
        returns the frames grouped by system (the original order when each system's frames
        were contiguous).
    """
    import warnings

    from ase.data import chemical_symbols

    if fmt not in ("deepmd/npy", "deepmd/raw"):
        raise ValueError(f"fmt must be 'deepmd/npy' or 'deepmd/raw', got {fmt!r}")
    dpdata = _import_dpdata()
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{path} is not empty: choose an empty folder or pass overwrite=True")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)

    partial = dataset.pbc.any(dim=1) & ~dataset.pbc.all(dim=1)
    if bool(partial.any()):
        raise ValueError(f"frame {int(partial.nonzero()[0])} is periodic in some directions only; "
                         "DeePMD systems are periodic in all three or in none")
    elements = dataset.element_numbers()
    type_of_z = {z: k for k, z in enumerate(elements)}
    type_names = [chemical_symbols[z] for z in elements]

    offsets = dataset.frame_offsets.tolist()
    groups: dict[tuple, list[int]] = {}
    for i in range(dataset.n_frames):
        key = (tuple(dataset.atomic_numbers[offsets[i] : offsets[i + 1]].tolist()), bool(dataset.pbc[i].all()))
        groups.setdefault(key, []).append(i)

    written = []
    for k, ((numbers, periodic), frames) in enumerate(groups.items()):
        sub = dataset.subset(frames)
        n_frames, n_atoms = sub.n_frames, len(numbers)
        atom_types = np.array([type_of_z[z] for z in numbers], dtype=np.int64)
        data = {
            "atom_names": list(type_names),
            "atom_numbs": [int((atom_types == t).sum()) for t in range(len(type_names))],
            "atom_types": atom_types,
            "orig": np.zeros(3),
            "cells": sub.cells_A.numpy().copy(),
            "coords": sub.positions_A.numpy().reshape(n_frames, n_atoms, 3).copy(),
            "energies": sub.energies_eV.numpy().copy(),
            "forces": sub.forces_eV_per_A.numpy().reshape(n_frames, n_atoms, 3).copy(),
        }
        if not periodic:
            data["nopbc"] = True
        if bool(sub.has_stress.all()):
            volumes = sub.volumes_A3().numpy()
            data["virials"] = -sub.stress_eV_per_A3.numpy() * volumes[:, None, None]
        elif bool(sub.has_stress.any()):
            warnings.warn(f"system {k} ({_formula(numbers)}): only some frames have stress; "
                          "written without virials", stacklevel=2)
        folder = path / f"{k:03d}_{_formula(numbers)}"
        system = dpdata.LabeledSystem(data=data)
        if fmt == "deepmd/npy":
            system.to("deepmd/npy", str(folder), set_size=set_size, prec=np.float64)
        else:
            system.to("deepmd/raw", str(folder))
        written.append(folder)
    return written
