"""Energies, forces and stress of a potential on labelled frames, and labels made by a potential.

:func:`predict_batch` is the one place where a potential meets a batch of reference frames:
the DFT loss (with a graph) and the error metrics (without) both call it. Stress is computed
only where asked; a batch that mixes periodic frames with stress and other frames is
evaluated in two parts, since the strain derivative needs fully periodic cells.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Sequence

import torch

from ..potentials.base import Potential
from ..state import State, concatenate, from_atoms
from .dft import DFTDataset

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms


@dataclass
class BatchPrediction:
    """A potential's values on one batch.

    Attributes:
        energies_eV: [n_systems] energies.
        forces_eV_per_A: [n_atoms, 3] forces.
        stress_eV_per_A3: [n_systems, 3, 3] stress where ``stress_mask`` is True, zeros elsewhere.
        stress_mask: [n_systems] the systems whose stress was computed.
    """

    energies_eV: torch.Tensor
    forces_eV_per_A: torch.Tensor
    stress_eV_per_A3: torch.Tensor
    stress_mask: torch.Tensor


def predict_batch(
    potential: Potential,
    state: State,
    stress_mask: torch.Tensor | None = None,
    create_graph: bool = False,
) -> BatchPrediction:
    """Energies, forces and (for the systems in ``stress_mask``) stress of ``state``.

    Args:
        potential: the model.
        state: the structures.
        stress_mask: [n_systems] bool, systems whose stress is wanted (each must be fully
            periodic); None or all False: no stress.
        create_graph: keep the graph so the outputs can be differentiated with respect to
            the potential's parameters (training); False detaches them (evaluation).
    """
    n_sys = state.n_systems
    if stress_mask is None:
        stress_mask = torch.zeros(n_sys, dtype=torch.bool, device=state.device)
    stress_mask = stress_mask.to(state.device)
    if not bool(stress_mask.any()):
        energy, forces_all, _ = _computed(potential, state, False, create_graph)
        zeros = torch.zeros(n_sys, 3, 3, dtype=energy.dtype, device=state.device)
        return BatchPrediction(energy, forces_all, zeros, stress_mask)
    if bool(state.pbc.all()):
        energy, forces_all, stress_all = _computed(potential, state, True, create_graph)
        assert stress_all is not None
        masked = stress_all * stress_mask[:, None, None].to(stress_all.dtype)
        return BatchPrediction(energy, forces_all, masked, stress_mask)
    periodic = state.pbc.all(dim=1)
    if bool((stress_mask & ~periodic).any()):
        raise ValueError("stress was asked for a system that is not periodic in all three directions")
    # two passes: the stress systems with the strain derivative, the others without
    systems = state.split()
    with_s = [k for k in range(n_sys) if bool(stress_mask[k])]
    without = [k for k in range(n_sys) if not bool(stress_mask[k])]
    e_s, f_s, s_s = _computed(potential, concatenate([systems[k] for k in with_s]), True, create_graph)
    e_n, f_n, _ = _computed(potential, concatenate([systems[k] for k in without]), False, create_graph)
    assert s_s is not None
    counts = state.n_atoms_per_system.tolist()
    forces_s = torch.split(f_s, [counts[k] for k in with_s])
    forces_n = torch.split(f_n, [counts[k] for k in without])
    energies: list[torch.Tensor] = [torch.empty(0)] * n_sys
    forces: list[torch.Tensor] = [torch.empty(0)] * n_sys
    stress: list[torch.Tensor] = [torch.empty(0)] * n_sys
    for j, k in enumerate(with_s):
        energies[k], forces[k], stress[k] = e_s[j], forces_s[j], s_s[j]
    for j, k in enumerate(without):
        energies[k], forces[k] = e_n[j], forces_n[j]
        stress[k] = torch.zeros(3, 3, dtype=e_n.dtype, device=state.device)
    return BatchPrediction(torch.stack(energies), torch.cat(forces), torch.stack(stress), stress_mask)


def _computed(potential: Potential, state: State, stress: bool,
              create_graph: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(energies, forces, stress or None) of ``state``."""
    out = potential.compute(state, forces=True, stress=stress, create_graph=create_graph)
    assert out.forces_eV_per_A is not None
    return out.energy_eV, out.forces_eV_per_A, out.stress_eV_per_A3


@dataclass
class Predictions:
    """A potential's values on every frame of a data set (float64, detached).

    Attributes:
        energies_eV: [n_frames].
        forces_eV_per_A: [n_atoms_total, 3].
        stress_eV_per_A3: [n_frames, 3, 3], zeros where not computed.
        stress_mask: [n_frames] frames whose stress was computed.
    """

    energies_eV: torch.Tensor
    forces_eV_per_A: torch.Tensor
    stress_eV_per_A3: torch.Tensor
    stress_mask: torch.Tensor


def predict(
    potential: Potential,
    dataset: DFTDataset,
    batch_size: int = 8,
    stress: bool | None = None,
    dtype: torch.dtype = torch.float64,
) -> Predictions:
    """Evaluate ``potential`` on every frame of ``dataset`` in batches (no parameter graph kept).

    Args:
        stress: compute stress for the frames with a stress label (None: if any frame has one;
            False: never; True: for every fully periodic frame).
        dtype: dtype of the positions given to the potential.
    """
    if stress is None:
        mask_all = dataset.has_stress.clone()
    elif stress:
        mask_all = dataset.pbc.all(dim=1)
    else:
        mask_all = torch.zeros(dataset.n_frames, dtype=torch.bool)
    device = potential_device(potential)
    energies, forces, stresses = [], [], []
    for start in range(0, dataset.n_frames, batch_size):
        idx = torch.arange(start, min(start + batch_size, dataset.n_frames))
        batch = dataset.batch(idx, dtype=dtype, device=device)
        out = predict_batch(potential, batch.state, mask_all[idx], create_graph=False)
        energies.append(out.energies_eV.detach().to("cpu", torch.float64))
        forces.append(out.forces_eV_per_A.detach().to("cpu", torch.float64))
        stresses.append(out.stress_eV_per_A3.detach().to("cpu", torch.float64))
    return Predictions(torch.cat(energies), torch.cat(forces), torch.cat(stresses), mask_all)


def potential_device(potential: Potential) -> torch.device:
    """The device of the first parameter (or buffer) of ``potential``; CPU if it has none."""
    for parameter in potential.parameters():
        return parameter.device
    for buffer in potential.buffers():
        return buffer.device
    return torch.device("cpu")


def label_with_potential(
    potential: Potential,
    frames: "State | Sequence[Atoms]",
    batch_size: int = 8,
    stress: bool = True,
    source: str = "<labelled>",
) -> DFTDataset:
    """A data set whose labels are ``potential``'s energies, forces and (periodic frames) stress.

    For synthetic tests, for distillation from a reference model, and for checks that a
    model reproduces its own labels exactly.
    """
    state = frames if isinstance(frames, State) else from_atoms(list(frames))
    counts = state.n_atoms_per_system
    unlabeled = DFTDataset(
        positions_A=state.positions.detach().cpu(),
        atomic_numbers=state.atomic_numbers.cpu(),
        atoms_per_frame=counts.cpu(),
        cells_A=state.cell.detach().cpu(),
        pbc=state.pbc.cpu(),
        energies_eV=torch.zeros(state.n_systems),
        forces_eV_per_A=torch.zeros(state.n_atoms, 3),
        stress_eV_per_A3=torch.zeros(state.n_systems, 3, 3),
        has_stress=torch.zeros(state.n_systems, dtype=torch.bool),
        source=source,
    )
    pred = predict(potential, unlabeled, batch_size=batch_size, stress=stress, dtype=state.dtype)
    return DFTDataset(
        positions_A=unlabeled.positions_A,
        atomic_numbers=unlabeled.atomic_numbers,
        atoms_per_frame=unlabeled.atoms_per_frame,
        cells_A=unlabeled.cells_A,
        pbc=unlabeled.pbc,
        energies_eV=pred.energies_eV,
        forces_eV_per_A=pred.forces_eV_per_A,
        stress_eV_per_A3=pred.stress_eV_per_A3,
        has_stress=pred.stress_mask,
        source=source,
    )


def add_term_to_labels(dataset: DFTDataset, term: Potential, batch_size: int = 8, source: str | None = None) -> DFTDataset:
    """``dataset`` with ``term``'s energies, forces and stress added to its labels.

    Turns labels of one level into those of another that differs by a known term, e.g. PBE
    into PBE-D3 with :class:`~exprefine.potentials.dftd3.D3Dispersion`. Stress is added where
    the frame has a stress label.
    """
    pred = predict(term, dataset, batch_size=batch_size, stress=None)
    stress = dataset.stress_eV_per_A3 + pred.stress_eV_per_A3 * dataset.has_stress[:, None, None]
    return replace(dataset, energies_eV=dataset.energies_eV + pred.energies_eV,
                   forces_eV_per_A=dataset.forces_eV_per_A + pred.forces_eV_per_A, stress_eV_per_A3=stress,
                   source=dataset.source if source is None else source)
