"""The DFT loss of a batch of labelled frames (energies, forces, stress).

The loss of a batch B of frames (each frame i with N_i atoms):

    L_DFT = w_E · mean_{i∈B} ((E_pred,i − E_ref,i)/N_i)²          [(eV/atom)²]
          + w_F · mean over the atoms and x, y, z of (F_pred − F_ref)²  [(eV/Å)²]
          + w_S · mean over the stress frames and 9 components of (σ_pred − σ_ref)²  [(eV/Å³)²]

Forces and stress come from :meth:`Potential.compute` with ``create_graph=True``, so the
gradient of L_DFT reaches the parameters through them. The same function serves a pure fit
(:func:`exprefine.training.train`) and, added to the experimental loss, fused refinement
(:mod:`exprefine.refine.fused`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..potentials.base import Potential
from .dft import DFTBatch
from .predict import predict_batch


@dataclass
class DFTLossTerms:
    """The DFT loss of a batch and its unweighted parts.

    Attributes:
        total: weighted sum, a differentiable scalar.
        energy_mse: mean over frames of ((E_pred − E_ref)/N)², (eV/atom)².
        force_mse: mean over atoms and components of (F_pred − F_ref)², (eV/Å)².
        stress_mse: mean over stress-labelled frames and components of (σ_pred − σ_ref)², (eV/Å³)²
            (zero when the stress weight is zero or no frame has a stress label).
        n_frames: frames in the batch.
        n_atoms: atoms in the batch.
        n_stress_frames: frames that entered the stress term.
    """

    total: torch.Tensor
    energy_mse: torch.Tensor
    force_mse: torch.Tensor
    stress_mse: torch.Tensor
    n_frames: int
    n_atoms: int
    n_stress_frames: int


def dft_loss_terms(
    potential: Potential,
    batch: DFTBatch,
    energy_weight: float = 1.0,
    force_weight: float = 1.0,
    stress_weight: float = 0.0,
) -> DFTLossTerms:
    """The DFT loss of ``batch`` (see the module docstring) with its graph to the parameters."""
    stress_mask = batch.has_stress if stress_weight > 0 else torch.zeros_like(batch.has_stress)
    pred = predict_batch(potential, batch.state, stress_mask, create_graph=True)
    f64 = torch.float64
    n_atoms = batch.n_atoms_per_frame.to(f64)
    de = (pred.energies_eV.to(f64) - batch.energies_eV) / n_atoms
    energy_mse = de.pow(2).mean()
    force_mse = (pred.forces_eV_per_A.to(f64) - batch.forces_eV_per_A).pow(2).mean()
    n_stress = int(stress_mask.sum())
    if n_stress:
        ds = pred.stress_eV_per_A3.to(f64)[stress_mask] - batch.stress_eV_per_A3[stress_mask]
        stress_mse = ds.pow(2).mean()
    else:
        stress_mse = torch.zeros((), dtype=f64, device=energy_mse.device)
    total = energy_weight * energy_mse + force_weight * force_mse
    if n_stress:
        total = total + stress_weight * stress_mse
    return DFTLossTerms(total=total, energy_mse=energy_mse, force_mse=force_mse, stress_mse=stress_mse,
                        n_frames=batch.n_frames, n_atoms=batch.state.n_atoms, n_stress_frames=n_stress)


def dft_loss(
    potential: Potential,
    batch: DFTBatch,
    energy_weight: float = 1.0,
    force_weight: float = 1.0,
    stress_weight: float = 0.0,
) -> torch.Tensor:
    """The weighted DFT loss of ``batch``: a differentiable scalar (see :func:`dft_loss_terms`)."""
    return dft_loss_terms(potential, batch, energy_weight, force_weight, stress_weight).total
