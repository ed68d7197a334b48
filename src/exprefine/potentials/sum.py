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

    def term_list(self) -> list[Potential]:
        """The terms, in order."""
        return [t for t in self.terms if isinstance(t, Potential)]

    def energy(self, state: State) -> torch.Tensor:
        terms = self.term_list()
        total = terms[0].energy(state)
        for term in terms[1:]:
            total = total + term.energy(state)
        return total

    def summary(self) -> dict[str, float]:
        """Summaries of the terms that offer one (keys prefixed by the term index if several do)."""
        parts = [(k, getattr(t, "summary")()) for k, t in enumerate(self.term_list())
                 if callable(getattr(t, "summary", None))]
        if len(parts) == 1:
            return dict(parts[0][1])
        return {f"term{k}.{name}": v for k, s in parts for name, v in s.items()}
