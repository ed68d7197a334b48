"""Structures as LAMMPS data files (``atom_style atomic``, ``units metal``) for the inputs of examples/lammps."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ase.io import write

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms


def write_lammps_data(atoms: "Atoms", path: str | Path, species: Sequence[str]) -> "Atoms":
    """Write ``atoms`` as a LAMMPS data file with atom types in the order of ``species``; the atoms written.

    The cell is first turned into LAMMPS's orientation (a along x, b in the xy plane: ASE's
    standard form, a rotation that keeps fractional coordinates), so the returned Atoms and the
    LAMMPS box share one frame: forces and positions compare without a rotation. Masses are
    written per type (ASE's standard masses), so ``exprefine lammps`` can map types by mass.

    Raises:
        ValueError: an element of ``atoms`` missing from ``species``.
    """
    missing = sorted(set(atoms.get_chemical_symbols()) - set(species))
    if missing:
        raise ValueError(f"{path}: elements {missing} have no atom type in species {list(species)}")
    atoms = atoms.copy()
    standard, _ = atoms.cell.standard_form()
    atoms.set_cell(standard, scale_atoms=True)
    write(str(path), atoms, format="lammps-data", masses=True, specorder=list(species), units="metal",
          atom_style="atomic")
    return atoms
