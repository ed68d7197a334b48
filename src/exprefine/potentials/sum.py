"""A sum of potentials (e.g. a physical prior plus a learned correction)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..state import State
from .base import Potential


class SumPotential(Potential):
    """E(state) = Σ_k E_k(state); the cutoff is the largest of the terms."""

    def __init__(self, terms: Sequence[Potential]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("SumPotential needs at least one term")
        self.terms = nn.ModuleList(terms)
        self.cutoff_A = max(float(t.cutoff_A) for t in terms)

    def energy(self, state: State) -> torch.Tensor:
        total = self.terms[0].energy(state)
        for term in self.terms[1:]:
            total = total + term.energy(state)
        return total
