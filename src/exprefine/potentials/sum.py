"""A sum of potentials (e.g. a physical prior plus a learned correction)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import torch
from torch import nn

from ..state import State
from .base import Potential, PotentialOutput


class SumPotential(Potential):
    """E(state) = Σ_k E_k(state); the cutoff is the largest of the terms.

    Args:
        terms: the potentials summed.
        concurrent: evaluate the terms' forces and stress side by side, one Python thread per
            term, and add them up. Forces are linear in the terms, so the result is the
            sequential one up to the order of floating-point additions. It pays where the terms
            are comparably expensive and release the GIL while they work, e.g. a TorchScript MLIP
            next to the single-threaded ``dftd3`` library: on 2 cores, DeePMD + D3(BJ) on g-C3N4
            bilayers of 448 and 896 atoms runs 1.16× and 1.38× faster side by side at one torch
            thread than in sequence at two (``benchmarks/concurrent_terms.py``). Give torch one
            thread per core that is left to each term. Energies alone and derivatives that keep
            their graph (``create_graph``) are always evaluated in sequence.
    """

    def __init__(self, terms: Sequence[Potential], concurrent: bool = False) -> None:
        super().__init__()
        if not terms:
            raise ValueError("SumPotential needs at least one term")
        self.terms = nn.ModuleList(terms)
        self.cutoff_A = max(float(t.cutoff_A) for t in terms)
        self.concurrent = bool(concurrent)

    def term_list(self) -> list[Potential]:
        """The terms, in order."""
        return [t for t in self.terms if isinstance(t, Potential)]

    def energy(self, state: State) -> torch.Tensor:
        terms = self.term_list()
        total = terms[0].energy(state)
        for term in terms[1:]:
            total = total + term.energy(state)
        return total

    def compute(self, state: State, *, forces: bool = True, stress: bool = False,
                create_graph: bool = False) -> PotentialOutput:
        """As :meth:`Potential.compute`; with ``concurrent`` set, forces and stress term by term in threads."""
        terms = self.term_list()
        if not self.concurrent or len(terms) < 2 or create_graph or not (forces or stress):
            return super().compute(state, forces=forces, stress=stress, create_graph=create_graph)
        with ThreadPoolExecutor(max_workers=len(terms), thread_name_prefix="exprefine-term") as pool:
            futures = [pool.submit(term.compute, state, forces=forces, stress=stress) for term in terms]
            outputs = [future.result() for future in futures]
        return sum_outputs(outputs)

    def summary(self) -> dict[str, float]:
        """Summaries of the terms that offer one (keys prefixed by the term index if several do)."""
        parts = [(k, getattr(t, "summary")()) for k, t in enumerate(self.term_list())
                 if callable(getattr(t, "summary", None))]
        if len(parts) == 1:
            return dict(parts[0][1])
        return {f"term{k}.{name}": v for k, s in parts for name, v in s.items()}


def _add(values: Sequence[torch.Tensor | None]) -> torch.Tensor | None:
    """values[0] + values[1] + ... in order; None where any is None."""
    present = [v for v in values if v is not None]
    if len(present) < len(values):
        return None
    result = present[0]
    for value in present[1:]:
        result = result + value
    return result


def sum_outputs(outputs: Sequence[PotentialOutput]) -> PotentialOutput:
    """The term-by-term sum of potential outputs of the same batch (forces or stress None where any term's is)."""
    energy = _add([o.energy_eV for o in outputs])
    assert energy is not None
    return PotentialOutput(energy_eV=energy, forces_eV_per_A=_add([o.forces_eV_per_A for o in outputs]),
                           stress_eV_per_A3=_add([o.stress_eV_per_A3 for o in outputs]))
