"""Fused refinement: experiment plus reference (DFT) labels in one loss (Röcken & Zavadlav 2024).

At every update the refiner adds λ · L_DFT(batch) to the experimental loss, where the
batch is drawn at random from the training frames and

    L_DFT = w_E ⟨((E − E_ref)/N)²⟩ + w_F ⟨(F − F_ref)²⟩ + w_S ⟨(σ − σ_ref)²⟩

(eV/atom, eV/Å, eV/Å³), so the model keeps its accuracy where the experiment says
nothing. The test frames are evaluated before and after the refinement.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.dft import DFTDataset
from ..data.loss import dft_loss_terms
from ..data.metrics import DFTErrors, evaluate_dft_errors
from ..potentials.base import Potential


@dataclass
class FusedDFT:
    """The labelled frames of a fused refinement.

    Attributes:
        train: frames whose loss enters every update.
        test: held-out frames whose errors are reported before and after (None: no report).
        weight: λ, the factor of L_DFT in the total loss (0: report only).
        batch_size: training frames per update.
        energy_weight, force_weight, stress_weight: w_E, w_F, w_S.
        eval_batch_size: frames per batch when evaluating the test set.
    """

    train: DFTDataset
    test: DFTDataset | None
    weight: float = 0.0
    batch_size: int = 4
    energy_weight: float = 1.0
    force_weight: float = 1.0
    stress_weight: float = 0.0
    eval_batch_size: int = 16

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"the fused DFT weight must be ≥ 0, got {self.weight}")
        if self.weight > 0 and len(self.train) == 0:
            raise ValueError("fused refinement needs training frames (the split left none)")


def accumulate_dft_gradient(potential: Potential, dft: FusedDFT, generator: torch.Generator) -> float:
    """Add ∂(λ L_DFT)/∂θ of a random training batch to the parameters' .grad; returns L_DFT of the batch."""
    n = len(dft.train)
    indices = torch.randperm(n, generator=generator)[: min(dft.batch_size, n)]
    batch = dft.train.batch(indices, dtype=_dtype(potential))
    terms = dft_loss_terms(potential, batch, dft.energy_weight, dft.force_weight, dft.stress_weight)
    params = potential.trainable_parameters()
    (dft.weight * terms.total).backward(inputs=params)
    return float(terms.total.detach())


def held_out_errors(potential: Potential, dft: FusedDFT | None) -> DFTErrors | None:
    """Errors on the held-out frames, or None when there are none."""
    if dft is None or dft.test is None or len(dft.test) == 0:
        return None
    return evaluate_dft_errors(potential, dft.test, batch_size=dft.eval_batch_size)


def _dtype(potential: Potential) -> torch.dtype:
    for p in potential.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float64
