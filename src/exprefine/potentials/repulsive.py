"""A fixed repulsive r⁻¹² pair prior (the repulsive part of Lennard-Jones), shifted to zero at its cutoff.

    φ(r) = 4ε[(σ/r)¹² − (σ/r_c)¹²]  for r < r_c,   φ(r) = 0  beyond.

Not trainable: it keeps particles apart while a learned term (spline, three-body,
network) is refined on top of it. σ and ε are buffers (saved with the model, moved
by ``.to(dtype)``), one value per unordered species pair.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .base import PairPotential, element_symbols
from .lennard_jones import _per_pair


class RepulsivePrior(PairPotential):
    """4ε(σ/r)¹² shifted to vanish at the cutoff; no trainable parameters.

    Args:
        species: elements, e.g. ``["O"]``.
        sigma_A: σ in Å, one value or one per unordered species pair (upper triangle,
            row-major: for species [A, B]: AA, AB, BB).
        epsilon_eV: ε in eV, same layout.
        cutoff_A: r_c in Å; the energy is shifted to zero there (the force is not:
            it jumps by 48ε σ¹²/r_c¹³, negligible for r_c ≳ 1.5σ).
    """

    sigma_A: torch.Tensor
    epsilon_eV: torch.Tensor

    def __init__(
        self,
        species: Sequence[str | int],
        sigma_A: float | Sequence[float],
        epsilon_eV: float | Sequence[float],
        cutoff_A: float,
    ) -> None:
        super().__init__(species, cutoff_A)
        n = self.n_pairs_of_species
        self.register_buffer("sigma_A", _per_pair(sigma_A, n, "sigma_A"))
        self.register_buffer("epsilon_eV", _per_pair(epsilon_eV, n, "epsilon_eV"))

    def pair_energy(self, r_A: torch.Tensor, pair_type: torch.Tensor) -> torch.Tensor:
        sigma = self.sigma_A.to(r_A.dtype)[pair_type]
        eps = self.epsilon_eV.to(r_A.dtype)[pair_type]
        return 4.0 * eps * ((sigma / r_A) ** 12 - (sigma / self.cutoff_A) ** 12)

    def extra_repr(self) -> str:
        return (f"species={element_symbols(self.species_numbers)}, sigma_A={self.sigma_A.tolist()}, "
                f"epsilon_eV={self.epsilon_eV.tolist()}, cutoff_A={self.cutoff_A}")
