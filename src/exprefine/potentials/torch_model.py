"""Any torch module with a documented energy signature as an exprefine potential.

The wrapped module is called as::

    energies = module(positions, cell, atomic_numbers, system_idx, edge_index, shifts_A)

with

* ``positions``: [n_atoms, 3] Cartesian positions, Å;
* ``cell``: [n_systems, 3, 3] lattice vectors as rows, Å;
* ``atomic_numbers``: [n_atoms] int64;
* ``system_idx``: [n_atoms] int64, system of each atom (contiguous, sorted);
* ``edge_index``: [2, n_pairs] int64 (i, j) pairs closer than ``cutoff_A`` (strictly), both
  directions by default (``full_list=True``), no atom paired with itself in the same image;
* ``shifts_A``: [n_pairs, 3] Å, such that the pair vector is
  ``positions[j] − positions[i] + shifts_A`` (``shifts_A = S·cell`` for integer cell shifts S),

and returns ``energies``: [n_systems] potential energy of each system in eV. The module must
compute everything from these tensors with torch operations: energies are then
differentiable in positions and cell (forces and stress by autograd) and in the module's
parameters (for reweighting). The same convention as MACE's (sender, receiver) edges.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..neighbors import VerletPairCache
from ..state import State
from .base import Potential
from .edges import edges_within_cutoff
from .selection import GENERIC_PRESETS, select_trainable


class TorchEnergyModel(Potential):
    """Wrap a user's torch module with the signature in the module doc.

    Args:
        module: the energy model (becomes the submodule ``self.module``).
        cutoff_A: interaction range; pairs closer than this are passed to the module, Å.
        trainable: which of the module's parameters are trained: ``"all"`` (default),
            ``"none"``, glob or ``"re:<regex>"`` name patterns, or a list of them
            (see :mod:`exprefine.potentials.selection`); the others are frozen.
        full_list: pass each pair in both directions (default) or once.
        skin_A: Verlet skin of the cached neighbour list, Å.
    """

    def __init__(
        self,
        module: nn.Module,
        cutoff_A: float,
        *,
        trainable: str | Sequence[str] = "all",
        full_list: bool = True,
        skin_A: float = 1.0,
    ) -> None:
        super().__init__()
        if not cutoff_A > 0:
            raise ValueError(f"cutoff must be positive, got {cutoff_A} Å")
        self.module = module
        self.cutoff_A = float(cutoff_A)
        self.full_list = bool(full_list)
        self.pair_cache = VerletPairCache(skin_A=skin_A)
        if any(True for _ in module.parameters()):
            select_trainable(self.module, trainable, GENERIC_PRESETS)

    def trainable_parameter_names(self) -> list[str]:
        """Names (relative to the wrapped module) of the parameters with ``requires_grad``."""
        return [n for n, p in self.module.named_parameters() if p.requires_grad]

    def energy(self, state: State) -> torch.Tensor:
        """[n_systems] energy in eV from the wrapped module."""
        pairs = self.pair_cache.pairs(state, self.cutoff_A)
        edges = edges_within_cutoff(pairs, state.positions, state.cell, self.cutoff_A, full_list=self.full_list)
        energies = self.module(
            state.positions, state.cell, state.atomic_numbers, state.system_idx, edges.edge_index, edges.shifts_A
        )
        if not isinstance(energies, torch.Tensor) or tuple(energies.shape) != (state.n_systems,):
            got = tuple(energies.shape) if isinstance(energies, torch.Tensor) else type(energies).__name__
            raise ValueError(f"{type(self.module).__name__} must return energies of shape [{state.n_systems}], got {got}")
        return energies.to(state.dtype)


__all__ = ["TorchEnergyModel"]
