"""Statistics of a labelled data set that set up a model before training.

* Atomic reference energies E0 by least squares (MACE's ``E0s="average"``): with n_fz the
  number of atoms of element z in frame f, minimise Σ_f (E_f − Σ_z n_fz E0_z)². When the
  compositions do not fix every E0 (e.g. all frames have the same C:N ratio) the
  minimum-norm solution is returned and ``rank`` says so; the sum Σ_z n_z E0_z is then still
  right for every composition in the data.
* The mean number of neighbours within a cutoff (MACE's ``avg_num_neighbors``).
* The mean per-atom energy left after subtracting the E0s, ⟨(E_f − Σ_z n_fz E0_z)/N_f⟩, and the
  RMS of all force components (MACE's ``atomic_inter_shift`` and ``atomic_inter_scale``).

Units: eV, eV/Å, Å.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import torch

from ..neighbors import build_pairs
from .dft import DFTDataset


@dataclass
class AtomicEnergyFit:
    """Least-squares atomic reference energies.

    Attributes:
        energies_eV: E0 per atomic number, eV.
        residual_rmse_meV_per_atom: RMS over frames of (E_f − Σ n_fz E0_z)/N_f, meV/atom.
        rank: rank of the composition matrix (< number of elements: E0s not all determined).
        n_frames: frames in the fit.
    """

    energies_eV: dict[int, float] = field(default_factory=dict)
    residual_rmse_meV_per_atom: float = 0.0
    rank: int = 0
    n_frames: int = 0


def composition_matrix(dataset: DFTDataset, elements: list[int]) -> np.ndarray:
    """[n_frames, n_elements] number of atoms of each element (columns in the order of ``elements``)."""
    frame = dataset.frame_of_atom().numpy()
    z = dataset.atomic_numbers.numpy()
    counts = np.zeros((dataset.n_frames, len(elements)))
    for k, element in enumerate(elements):
        counts[:, k] = np.bincount(frame[z == element], minlength=dataset.n_frames)
    if int(counts.sum()) != dataset.n_atoms_total:
        unknown = sorted(set(z.tolist()) - set(elements))
        raise ValueError(f"the data set holds elements {unknown} that are not in {elements}")
    return counts


def fit_atomic_energies(dataset: DFTDataset, elements: list[int] | None = None) -> AtomicEnergyFit:
    """E0 per element by least squares on the total energies (see the module docstring).

    Args:
        dataset: labelled frames.
        elements: atomic numbers to fit (default: those in the data set).
    """
    if dataset.n_frames == 0:
        raise ValueError("cannot fit atomic energies to an empty data set")
    elements = sorted(elements) if elements is not None else dataset.element_numbers()
    a = composition_matrix(dataset, elements)
    e = dataset.energies_eV.numpy()
    e0, _, rank, _ = np.linalg.lstsq(a, e, rcond=None)
    residual = (e - a @ e0) / dataset.atoms_per_frame.numpy()
    return AtomicEnergyFit(
        energies_eV={int(z): float(v) for z, v in zip(elements, e0)},
        residual_rmse_meV_per_atom=float(np.sqrt(np.mean(residual**2))) * 1000.0,
        rank=int(rank),
        n_frames=dataset.n_frames,
    )


def average_neighbour_count(dataset: DFTDataset, cutoff_A: float, frames_per_chunk: int = 64) -> float:
    """Mean number of neighbours within ``cutoff_A`` Å per atom, over all atoms of all frames."""
    if not cutoff_A > 0:
        raise ValueError(f"cutoff_A must be positive, got {cutoff_A}")
    n_pairs = 0
    for start in range(0, dataset.n_frames, frames_per_chunk):
        idx = list(range(start, min(start + frames_per_chunk, dataset.n_frames)))
        state = dataset.batch(idx).state
        pairs = build_pairs(state, cutoff_A)
        if pairs.n_pairs:
            r = pairs.vectors(state.positions, state.cell).norm(dim=-1)
            n_pairs += int((r < cutoff_A).sum())
    return 2.0 * n_pairs / dataset.n_atoms_total


@dataclass
class InteractionStatistics:
    """Per-atom energy and force scales of the interaction part of the labels.

    Attributes:
        mean_energy_per_atom_eV: ⟨(E_f − Σ_z n_fz E0_z)/N_f⟩ over frames, eV/atom.
        force_rms_eV_per_A: RMS of all force components, eV/Å.
    """

    mean_energy_per_atom_eV: float
    force_rms_eV_per_A: float


def interaction_statistics(dataset: DFTDataset, atomic_energies_eV: Mapping[int, float]) -> InteractionStatistics:
    """The shift and scale MACE derives from its training data (see the module docstring)."""
    elements = sorted(int(z) for z in atomic_energies_eV)
    a = composition_matrix(dataset, elements)
    e0 = np.array([atomic_energies_eV[z] for z in elements])
    per_atom = (dataset.energies_eV.numpy() - a @ e0) / dataset.atoms_per_frame.numpy()
    force_rms = float(torch.sqrt(dataset.forces_eV_per_A.pow(2).mean()))
    return InteractionStatistics(float(per_atom.mean()), force_rms)


__all__ = ["AtomicEnergyFit", "InteractionStatistics", "average_neighbour_count", "composition_matrix",
           "fit_atomic_energies", "interaction_statistics"]
