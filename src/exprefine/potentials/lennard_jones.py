"""Truncated and shifted Lennard-Jones with trainable σ and ε per species pair.

φ(r) = 4ε[(σ/r)¹² − (σ/r)⁶] − φ_LJ(r_c) for r < r_c. σ and ε are stored as their
logarithms, so they stay positive and an optimizer step is a relative change.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ..units import BOLTZMANN_eV_per_K
from .base import PairPotential


class LennardJones(PairPotential):
    """Lennard-Jones pair potential.

    Args:
        species: elements, e.g. ``["Ar"]``.
        sigma_A: σ in Å, one value for all pairs or one per unordered species pair
            (upper triangle, row-major: for species [A, B]: AA, AB, BB).
        epsilon_eV: ε in eV, same layout.
        cutoff_A: truncation radius in Å; the energy is shifted to zero there.
        trainable: train σ and ε (both by default).
    """

    def __init__(
        self,
        species: Sequence[str | int],
        sigma_A: float | Sequence[float],
        epsilon_eV: float | Sequence[float],
        cutoff_A: float,
        trainable: bool = True,
        shift: bool = True,
    ) -> None:
        super().__init__(species, cutoff_A)
        n = self.n_pairs_of_species
        sigma = _per_pair(sigma_A, n, "sigma_A")
        epsilon = _per_pair(epsilon_eV, n, "epsilon_eV")
        self.log_sigma = nn.Parameter(torch.log(sigma), requires_grad=trainable)
        self.log_epsilon = nn.Parameter(torch.log(epsilon), requires_grad=trainable)
        self.shift = shift

    @property
    def sigma_A(self) -> torch.Tensor:
        """[n_species_pairs] σ in Å."""
        return self.log_sigma.exp()

    @property
    def epsilon_eV(self) -> torch.Tensor:
        """[n_species_pairs] ε in eV."""
        return self.log_epsilon.exp()

    def summary(self) -> dict[str, float]:
        """σ in Å and ε/k_B in K of every species pair, for logs."""
        out = {}
        for k, name in enumerate(self.species_pair_names()):
            out[f"sigma_A[{name}]"] = float(self.sigma_A[k].detach())
            out[f"epsilon_K[{name}]"] = float(self.epsilon_eV[k].detach()) / BOLTZMANN_eV_per_K
        return out

    def pair_energy(self, r_A: torch.Tensor, pair_type: torch.Tensor) -> torch.Tensor:
        sigma = self.sigma_A.to(r_A.dtype)[pair_type]
        eps = self.epsilon_eV.to(r_A.dtype)[pair_type]
        s6 = (sigma / r_A) ** 6
        e = 4.0 * eps * (s6 * s6 - s6)
        if self.shift:
            sc6 = (sigma / self.cutoff_A) ** 6
            e = e - 4.0 * eps * (sc6 * sc6 - sc6)
        return e


def _per_pair(value: float | Sequence[float], n: int, name: str) -> torch.Tensor:
    values = torch.as_tensor(value, dtype=torch.float64).reshape(-1).tolist()
    if len(values) == 1:
        values = values * n
    if len(values) != n:
        raise ValueError(f"{name}: expected 1 or {n} values (one per species pair), got {len(values)}")
    for v in values:
        if not (v > 0 and math.isfinite(v)):
            raise ValueError(f"{name} must be positive and finite, got {v}")
    return torch.tensor(values, dtype=torch.float64)
