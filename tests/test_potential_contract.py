"""The contract every exprefine potential keeps, checked the same way for each kind.

Lennard-Jones, the cubic pair spline, the pair dispersion term, a MACE model and a DeePMD model
(the last two small random models of their own packages, as in their adapter tests):

* forces and stress are the derivatives of the energy (finite differences), the energy is invariant
  under translation, rotation and permutation, and a batch equals its systems one by one
  (:func:`~exprefine.testing.check_potential`);
* the energy's gradient with respect to the trainable parameters equals finite differences;
* the energy leaves the caller's tensors as they were;
* MD runs with it and stays finite.

Adapter-specific behaviour (agreement with the package's own calculator, file formats, parameter
selection) stays in ``test_mace_adapter.py`` and ``test_deepmd_adapter.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from conftest import cn_crystal, cn_dispersion
from exprefine.potentials import LennardJones, PairSpline, Potential
from exprefine.sampling import SamplerSettings, sample
from exprefine.state import concatenate, from_atoms
from exprefine.testing import check_gradient_wrt_parameters, check_potential

# deepmd's TorchScript and e3nn's loading, as in the adapter tests
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:torch.jit"),
    pytest.mark.filterwarnings("ignore:The TorchScript type system:UserWarning"),
    pytest.mark.filterwarnings("ignore:Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD:UserWarning"),
]


def _argon(seed: int) -> Atoms:
    atoms = bulk("Ar", "fcc", a=5.26) * (2, 2, 2)
    atoms.set_cell(atoms.cell.array @ np.array([[1.02, 0.03, 0.0], [0.0, 0.99, 0.02], [0.01, 0.0, 1.01]]),
                   scale_atoms=True)
    atoms.rattle(0.1, seed=seed)
    return atoms


def _lennard_jones() -> Potential:
    return LennardJones(["Ar"], 3.4, 0.0104, cutoff_A=7.0)


def _spline() -> Potential:
    spline = PairSpline(["Ar"], cutoff_A=7.0, r_min_A=3.0, n_knots=9)
    with torch.no_grad():
        spline.values_eV.copy_(torch.linspace(0.02, -0.004, 8).reshape(1, 8))
    return spline


def _mace() -> Potential:
    pytest.importorskip("mace")
    from exprefine.potentials import MacePotential
    from test_mace_adapter import build_small_mace

    return MacePotential(build_small_mace(), trainable=["readouts"])


def _mace_frames(seed: int) -> Atoms:
    from test_mace_adapter import small_cell_frame, triclinic_frame

    return triclinic_frame(seed) if seed else small_cell_frame()


def _deepmd() -> Potential:
    pytest.importorskip("deepmd.pt")
    from exprefine.potentials import DeepmdPotential
    from test_deepmd_adapter import MODEL_PARAMS, build_tiny_model

    return DeepmdPotential(MODEL_PARAMS, state_dict=build_tiny_model().state_dict(), trainable="fitting")


def _deepmd_frames(seed: int) -> Atoms:
    from test_deepmd_adapter import small_cell_frame, triclinic_frame

    return triclinic_frame(seed) if seed else small_cell_frame()


@dataclass
class Case:
    """A potential and two periodic frames it knows the elements of."""

    build: Callable[[], Potential]
    frame: Callable[[int], Atoms]
    max_fd_atoms: int = 8


CASES = {
    "lennard_jones": Case(_lennard_jones, _argon),
    "pair_spline": Case(_spline, _argon),
    "pair_dispersion": Case(cn_dispersion, cn_crystal),
    "mace": Case(_mace, _mace_frames, max_fd_atoms=6),
    "deepmd": Case(_deepmd, _deepmd_frames, max_fd_atoms=6),
}


@pytest.fixture(params=list(CASES), scope="module")
def case(request) -> tuple[Potential, Case]:
    c = CASES[request.param]
    return c.build(), c


def test_forces_stress_invariances_and_batching(case):
    potential, c = case
    report = check_potential(potential, concatenate([from_atoms(c.frame(1)), from_atoms(c.frame(0))]),
                             max_fd_atoms=c.max_fd_atoms)
    assert report.stress_fd_error_eV_per_A3 is not None


def test_gradient_with_respect_to_every_trainable_parameter(case):
    potential, c = case
    report = check_gradient_wrt_parameters(potential, from_atoms(c.frame(1)), max_entries_per_parameter=3)
    trainable = {n for n, p in potential.named_parameters() if p.requires_grad}
    assert trainable and set(report.max_error_by_parameter) == trainable


def test_energy_leaves_the_callers_tensors_alone(case):
    potential, c = case
    state = from_atoms(c.frame(1))
    positions, cell = state.positions.clone(), state.cell.clone()
    potential.energy(state)
    assert not state.positions.requires_grad and not state.cell.requires_grad
    assert torch.equal(state.positions, positions) and torch.equal(state.cell, cell)


def test_molecular_dynamics_runs_and_stays_finite(case):
    potential, c = case
    start = concatenate([from_atoms(c.frame(0)), from_atoms(c.frame(0))])
    settings = SamplerSettings(temperature_K=300.0, timestep_fs=0.5, friction_per_ps=10.0,
                               n_equilibration_steps=5, n_production_steps=10, stride_steps=5, seed=2)
    traj = sample(potential, start, settings).trajectory
    assert traj.positions_A.shape[0] == 4
    assert bool(torch.isfinite(traj.positions_A).all()) and bool(torch.isfinite(traj.energies_eV).all())
    assert not torch.equal(traj.positions_A[0], traj.positions_A[-1])
