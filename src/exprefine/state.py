"""Batched system state: several independent periodic systems in one set of tensors.

Atoms of all systems are concatenated; ``system_idx`` says which system each atom
belongs to (atoms of one system are contiguous and systems appear in order).
Units: positions Å, cell Å (lattice vectors as rows), masses amu, velocities Å/fs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from .units import AMU_A2_PER_FS2_IN_eV

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms


@dataclass
class State:
    """Positions and identity of the atoms of ``n_systems`` periodic systems.

    Attributes:
        positions: [n_atoms, 3] Cartesian positions in Å.
        cell: [n_systems, 3, 3] lattice vectors as rows in Å.
        pbc: [n_systems, 3] periodicity along each lattice vector.
        atomic_numbers: [n_atoms] integer atomic numbers.
        masses: [n_atoms] masses in amu.
        system_idx: [n_atoms] index of the system of each atom (contiguous, sorted).
        velocities: [n_atoms, 3] velocities in Å/fs, or None.
    """

    positions: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    atomic_numbers: torch.Tensor
    masses: torch.Tensor
    system_idx: torch.Tensor
    velocities: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = self.positions.shape[0]
        if self.positions.ndim != 2 or self.positions.shape[1] != 3:
            raise ValueError(f"positions must have shape [n_atoms, 3], got {tuple(self.positions.shape)}")
        if self.cell.ndim == 2:
            self.cell = self.cell.unsqueeze(0)
        if self.pbc.ndim == 1:
            self.pbc = self.pbc.unsqueeze(0).expand(self.cell.shape[0], 3).clone()
        for name in ("atomic_numbers", "masses", "system_idx"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must have shape [{n}], got {tuple(getattr(self, name).shape)}")
        if self.velocities is not None and self.velocities.shape != self.positions.shape:
            raise ValueError("velocities must have the shape of positions")
        if n and bool((self.system_idx[1:] < self.system_idx[:-1]).any()):
            raise ValueError("system_idx must be sorted: atoms of one system must be contiguous")
        n_named = int(self.system_idx[-1]) + 1 if n else 0
        if n and (int(self.system_idx[0]) < 0 or n_named != self.cell.shape[0]):
            raise ValueError(f"cell has {self.cell.shape[0]} systems but system_idx names {n_named}")
        if self.pbc.shape != (self.cell.shape[0], 3):
            raise ValueError(f"pbc must have shape [{self.cell.shape[0]}, 3], got {tuple(self.pbc.shape)}")

    # ------------------------------------------------------------------ sizes
    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[0])

    @property
    def n_systems(self) -> int:
        return int(self.cell.shape[0])

    @property
    def n_atoms_per_system(self) -> torch.Tensor:
        """[n_systems] number of atoms in each system."""
        return torch.bincount(self.system_idx, minlength=self.n_systems)

    @property
    def dtype(self) -> torch.dtype:
        return self.positions.dtype

    @property
    def device(self) -> torch.device:
        return self.positions.device

    def volume_A3(self) -> torch.Tensor:
        """[n_systems] cell volumes in Å³."""
        return torch.linalg.det(self.cell).abs()

    # ---------------------------------------------------------- conversions
    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> "State":
        """Copy with floating tensors in ``dtype`` and everything on ``device``."""

        def conv(t: torch.Tensor, floating: bool) -> torch.Tensor:
            return t.to(device=device, dtype=dtype if floating and dtype is not None else t.dtype)

        return State(
            positions=conv(self.positions, True),
            cell=conv(self.cell, True),
            pbc=conv(self.pbc, False),
            atomic_numbers=conv(self.atomic_numbers, False),
            masses=conv(self.masses, True),
            system_idx=conv(self.system_idx, False),
            velocities=None if self.velocities is None else conv(self.velocities, True),
        )

    def clone(self) -> "State":
        return replace(
            self,
            positions=self.positions.clone(),
            cell=self.cell.clone(),
            pbc=self.pbc.clone(),
            atomic_numbers=self.atomic_numbers.clone(),
            masses=self.masses.clone(),
            system_idx=self.system_idx.clone(),
            velocities=None if self.velocities is None else self.velocities.clone(),
        )

    def detach(self) -> "State":
        return replace(
            self,
            positions=self.positions.detach(),
            cell=self.cell.detach(),
            velocities=None if self.velocities is None else self.velocities.detach(),
        )

    def split(self) -> list["State"]:
        """One single-system State per system."""
        counts = self.n_atoms_per_system.tolist()
        out = []
        start = 0
        for s, n in enumerate(counts):
            sl = slice(start, start + n)
            out.append(
                State(
                    positions=self.positions[sl],
                    cell=self.cell[s : s + 1],
                    pbc=self.pbc[s : s + 1],
                    atomic_numbers=self.atomic_numbers[sl],
                    masses=self.masses[sl],
                    system_idx=torch.zeros(n, dtype=torch.long, device=self.device),
                    velocities=None if self.velocities is None else self.velocities[sl],
                )
            )
            start += n
        return out

    def to_atoms(self) -> list["Atoms"]:
        """One ASE Atoms per system (velocities become ASE momenta)."""
        from ase import Atoms

        atoms_list = []
        for one in self.split():
            atoms = Atoms(
                numbers=one.atomic_numbers.cpu().numpy(),
                positions=one.positions.detach().cpu().double().numpy(),
                cell=one.cell[0].detach().cpu().double().numpy(),
                pbc=one.pbc[0].cpu().numpy(),
                masses=one.masses.detach().cpu().double().numpy(),
            )
            if one.velocities is not None:
                # ASE velocity unit: Å / (Å·sqrt(amu/eV)) -> v_ase = v[Å/fs] * sqrt(amu Å²/fs² in eV)
                atoms.set_velocities(one.velocities.detach().cpu().double().numpy() * np.sqrt(AMU_A2_PER_FS2_IN_eV))
            atoms_list.append(atoms)
        return atoms_list


def concatenate(states: Sequence[State]) -> State:
    """Stack states into one batch; system indices are renumbered in order."""
    if not states:
        raise ValueError("cannot concatenate an empty list of states")
    offsets = []
    total = 0
    for st in states:
        offsets.append(st.system_idx + total)
        total += st.n_systems
    has_v = all(st.velocities is not None for st in states)
    return State(
        positions=torch.cat([st.positions for st in states]),
        cell=torch.cat([st.cell for st in states]),
        pbc=torch.cat([st.pbc for st in states]),
        atomic_numbers=torch.cat([st.atomic_numbers for st in states]),
        masses=torch.cat([st.masses for st in states]),
        system_idx=torch.cat(offsets),
        velocities=torch.cat([st.velocities for st in states]) if has_v else None,  # type: ignore[misc]
    )


def replicate(state: State, n_replicas: int) -> State:
    """``n_replicas`` copies of every system of ``state`` in one batch."""
    return concatenate([state.clone() for _ in range(n_replicas)])


def from_atoms(
    atoms: "Atoms | Sequence[Atoms]",
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> State:
    """Build a State from one ASE Atoms or a list of them (one system each).

    Masses come from the Atoms (ASE defaults if unset); velocities are taken when
    any atom has a non-zero momentum.
    """
    from ase import Atoms

    if isinstance(atoms, Atoms):
        atoms = [atoms]
    parts = []
    for a in atoms:
        n = len(a)
        if n == 0:
            raise ValueError("an Atoms object has no atoms")
        cell = np.asarray(a.cell.array, dtype=float)
        pbc = np.asarray(a.pbc, dtype=bool)
        if pbc.any() and abs(np.linalg.det(cell)) < 1e-8:
            raise ValueError("a periodic Atoms object has a singular cell")
        momenta = a.get_momenta()
        velocities = None
        if np.any(momenta != 0.0):
            velocities = torch.as_tensor(
                a.get_velocities() / np.sqrt(AMU_A2_PER_FS2_IN_eV), dtype=dtype, device=device
            )
        parts.append(
            State(
                positions=torch.as_tensor(a.get_positions(), dtype=dtype, device=device),
                cell=torch.as_tensor(cell, dtype=dtype, device=device).unsqueeze(0),
                pbc=torch.as_tensor(pbc, device=device).unsqueeze(0),
                atomic_numbers=torch.as_tensor(a.get_atomic_numbers(), dtype=torch.long, device=device),
                masses=torch.as_tensor(a.get_masses(), dtype=dtype, device=device),
                system_idx=torch.zeros(n, dtype=torch.long, device=device),
                velocities=velocities,
            )
        )
    if any(p.velocities is None for p in parts):
        parts = [replace(p, velocities=None) for p in parts]
    return concatenate(parts)


def read_state(path: str | Path, index: str | int = -1, dtype: torch.dtype = torch.float64) -> State:
    """Read a structure file that ASE understands (extxyz, cif, POSCAR, LAMMPS data ...).

    ``index`` follows ASE: -1 is the last frame, ':' all frames (one system each).
    """
    from ase.io import read

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"structure file not found: {path}")
    try:
        atoms = read(str(path), index=index)
    except Exception as exc:  # ASE raises many kinds; name the file in one line
        raise ValueError(f"could not read structure file {path}: {exc}") from exc
    return from_atoms(atoms, dtype=dtype)


def write_state(path: str | Path, state: State) -> None:
    """Write every system of ``state`` as frames of an extxyz file."""
    from ase.io import write

    write(str(path), state.to_atoms(), format="extxyz")
