"""The Potential contract: a torch.nn.Module whose ``energy(state)`` returns one energy per system.

Forces and stress come from autograd in the base class: forces = −∂E/∂x and
stress = (1/V) ∂E/∂ε for a symmetric strain ε applied to positions and cell
(ASE's sign convention: pressure = −trace(stress)/3). Units: eV, Å, eV/Å, eV/Å³.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..neighbors import PairList, VerletPairCache
from ..state import State


@dataclass
class PotentialOutput:
    """Energies and their derivatives for a batch.

    Attributes:
        energy_eV: [n_systems] potential energy per system.
        forces_eV_per_A: [n_atoms, 3] or None.
        stress_eV_per_A3: [n_systems, 3, 3] or None.
    """

    energy_eV: torch.Tensor
    forces_eV_per_A: torch.Tensor | None = None
    stress_eV_per_A3: torch.Tensor | None = None


class Potential(nn.Module):
    """Base class of every potential exprefine can sample with and refine.

    Subclasses implement :meth:`energy`. ``cutoff_A`` is the interaction range
    (used for neighbour lists and for refusing observables beyond what a cell
    can represent).
    """

    cutoff_A: float = 0.0

    def energy(self, state: State) -> torch.Tensor:  # pragma: no cover - abstract
        """[n_systems] potential energy in eV, differentiable in positions, cell and parameters."""
        raise NotImplementedError

    def forward(self, state: State) -> torch.Tensor:
        return self.energy(state)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters a refinement moves (those that require a gradient), in module order
        (the order of the flat parameter vector θ)."""
        return [p for p in self.parameters() if p.requires_grad]

    def compute(
        self,
        state: State,
        *,
        forces: bool = True,
        stress: bool = False,
        create_graph: bool = False,
    ) -> PotentialOutput:
        """Energy and, by autograd, forces and stress of every system in ``state``.

        Args:
            state: the batch.
            forces: compute forces (eV/Å).
            stress: compute the stress tensor (eV/Å³) with the strain derivative.
            create_graph: keep the graph of the derivatives (for gradients of forces or
                virial with respect to parameters).
        """
        if not forces and not stress:
            return PotentialOutput(energy_eV=self.energy(state))
        if stress and not bool(state.pbc.all()):
            raise ValueError("stress needs cells periodic in all three directions")
        with torch.enable_grad():
            positions = state.positions.detach().requires_grad_(True)
            cell = state.cell.detach()
            inputs = [positions]
            positions_s = positions
            if stress:
                strain = torch.zeros_like(cell).requires_grad_(True)
                sym = 0.5 * (strain + strain.transpose(1, 2))
                positions_s = positions + torch.einsum("na,nab->nb", positions, sym[state.system_idx])
                cell = cell + torch.einsum("sia,sab->sib", cell, sym)
                inputs.append(strain)
            energy = self.energy(replace(state, positions=positions_s, cell=cell))
            grads = torch.autograd.grad(
                energy.sum(), inputs, create_graph=create_graph, allow_unused=True
            )
        out = PotentialOutput(energy_eV=energy if create_graph else energy.detach())
        if forces:
            g = grads[0] if grads[0] is not None else torch.zeros_like(positions)
            out.forces_eV_per_A = -g
        if stress:
            g = grads[-1] if grads[-1] is not None else torch.zeros_like(state.cell)
            volume = torch.linalg.det(state.cell).abs()
            out.stress_eV_per_A3 = g / volume[:, None, None]
        return out


def species_index_table(atomic_numbers: Sequence[int]) -> torch.Tensor:
    """[119] lookup: atomic number -> position in ``atomic_numbers``, −1 where absent."""
    table = torch.full((119,), -1, dtype=torch.long)
    for k, z in enumerate(atomic_numbers):
        if not 0 < int(z) < 119:
            raise ValueError(f"not an atomic number: {z}")
        table[int(z)] = k
    return table


def species_indices(table: torch.Tensor, known: Sequence[int], atomic_numbers: torch.Tensor, owner: str) -> torch.Tensor:
    """[n_atoms] position of each atom's element in a model's element list (``table`` from
    :func:`species_index_table`); a one-line error naming the elements ``owner`` does not know."""
    z = atomic_numbers
    if bool((z < 1).any() or (z > 118).any()):
        raise ValueError("atomic numbers out of range 1..118")
    idx = table.to(z.device)[z]
    if bool((idx < 0).any()):
        unknown = sorted(set(z[idx < 0].tolist()))
        raise ValueError(f"{owner} knows elements {element_symbols(known)} "
                         f"but the system contains {element_symbols(unknown)}")
    return idx


def element_symbols(atomic_numbers: Sequence[int]) -> list[str]:
    from ase.data import chemical_symbols

    return [chemical_symbols[int(z)] for z in atomic_numbers]


def atomic_number(symbol_or_number: str | int) -> int:
    """Atomic number of an element symbol ('Ar') or a number; a clear error otherwise."""
    from ase.data import atomic_numbers

    if isinstance(symbol_or_number, (int, np.integer)):
        return int(symbol_or_number)
    if symbol_or_number not in atomic_numbers:
        raise ValueError(f"unknown element symbol: {symbol_or_number!r}")
    return atomic_numbers[symbol_or_number]


class PairPotential(Potential):
    """Sum over pairs of φ_ab(r) for species a, b: subclasses implement :meth:`pair_energy`.

    Args:
        species: the elements this potential knows, as symbols or atomic numbers.
        cutoff_A: pairs beyond this distance do not interact.
    """

    _species_of_z: torch.Tensor

    def __init__(self, species: Sequence[str | int], cutoff_A: float) -> None:
        super().__init__()
        numbers = [atomic_number(s) for s in species]
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"species listed twice: {list(species)}")
        self.species_numbers = numbers
        self.cutoff_A = float(cutoff_A)
        self.register_buffer("_species_of_z", species_index_table(numbers), persistent=False)
        self.pair_cache = VerletPairCache(skin_A=1.0)

    @property
    def n_species(self) -> int:
        return len(self.species_numbers)

    def pair_index(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Index of the unordered species pair (a, b) in the upper triangle (row-major)."""
        lo = torch.minimum(a, b)
        hi = torch.maximum(a, b)
        n = self.n_species
        return lo * n - lo * (lo - 1) // 2 + (hi - lo)

    def species_pair_names(self) -> list[str]:
        """Names like ``"Ar-Kr"`` of the unordered species pairs, in parameter order."""
        symbols = element_symbols(self.species_numbers)
        n = self.n_species
        return [f"{symbols[a]}-{symbols[b]}" for a in range(n) for b in range(a, n)]

    @property
    def n_pairs_of_species(self) -> int:
        n = self.n_species
        return n * (n + 1) // 2

    def species_of(self, state: State) -> torch.Tensor:
        """[n_atoms] species index of each atom; a one-line error for an unknown element."""
        return species_indices(self._species_of_z, self.species_numbers, state.atomic_numbers, type(self).__name__)

    def pair_energy(self, r_A: torch.Tensor, pair_type: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """[n_pairs] energy in eV of pairs at distance ``r_A`` of species-pair type ``pair_type``."""
        raise NotImplementedError

    def energy_from_pairs(self, state: State, pairs: PairList) -> torch.Tensor:
        species = self.species_of(state)
        r = pairs.vectors(state.positions, state.cell).norm(dim=-1)
        inside = r < self.cutoff_A
        ptype = self.pair_index(species[pairs.i[inside]], species[pairs.j[inside]])
        e_pair = self.pair_energy(r[inside], ptype)
        energy = torch.zeros(state.n_systems, dtype=state.dtype, device=state.device)
        return energy.index_add(0, pairs.system[inside], e_pair.to(state.dtype))

    def energy(self, state: State) -> torch.Tensor:
        return self.energy_from_pairs(state, self.pair_cache.pairs(state, self.cutoff_A))
