"""Reweighted gradients of the fluctuation and cell observables equal finite differences on a frozen trajectory.

Frames: rattled (and, for NPT, strained) fcc argon, reference energies from other LJ parameters so
that the weights are not uniform. Checked: the chunked DiffTRe gradient (weights plus the
observables' own parameter dependence) and the Gauss–Newton Jacobian.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk

from exprefine.observables import BulkModulus, ElasticConstant, HeatCapacity, LatticeParameter, Observable
from exprefine.potentials import LennardJones
from exprefine.refine.gauss_newton import linearize
from exprefine.refine.targets import Target
from exprefine.reweighting import reweighted_loss_and_gradient
from exprefine.state import from_atoms
from exprefine.trajectory import Trajectory
from exprefine.units import BOLTZMANN_eV_per_K, eV_PER_A3_IN_bar

SIGMA_A = 3.405
EPSILON_eV = 119.8 * BOLTZMANN_eV_per_K
CUTOFF_A = 7.0
TEMPERATURE_K = 60.0
PRESSURE_bar = 500.0


def lj(scale_epsilon: float = 1.0) -> LennardJones:
    return LennardJones(["Ar"], sigma_A=SIGMA_A, epsilon_eV=EPSILON_eV * scale_epsilon, cutoff_A=CUTOFF_A)


def frozen_trajectory(npt: bool, n_frames: int = 6, seed: int = 0) -> Trajectory:
    """Rattled 32-atom fcc argon; NPT frames also get random cell strains of 1 %."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n_frames):
        atoms = bulk("Ar", "fcc", a=5.3, cubic=True).repeat(2)
        if npt:
            strain = np.eye(3) + 0.01 * rng.normal(size=(3, 3))
            atoms.set_cell(atoms.cell.array @ (0.5 * (strain + strain.T)), scale_atoms=True)
        atoms.positions += rng.normal(scale=0.06, size=atoms.positions.shape)
        frames.append(atoms)
    state = from_atoms(frames)
    n = len(frames[0])
    with torch.no_grad():
        reference = lj(1.04).energy(state).to(torch.float64)
    return Trajectory(
        positions_A=state.positions.reshape(n_frames, n, 3), cells_A=state.cell, pbc=torch.ones(3, dtype=torch.bool),
        atomic_numbers=state.atomic_numbers[:n], masses_amu=state.masses[:n], energies_eV=reference,
        kT_eV=BOLTZMANN_eV_per_K * TEMPERATURE_K, fingerprint="frozen",
        pressure_eV_per_A3=PRESSURE_bar / eV_PER_A3_IN_bar if npt else None,
    )


CASES = [
    ("C11", lambda: ElasticConstant("C11", TEMPERATURE_K), False),
    ("C12_cubic", lambda: ElasticConstant("C12", TEMPERATURE_K, cubic_average=True), False),
    ("C44_cubic", lambda: ElasticConstant("C44", TEMPERATURE_K, cubic_average=True), False),
    ("C_V_mole", lambda: HeatCapacity(TEMPERATURE_K, "mole"), False),
    ("C_P_gram", lambda: HeatCapacity(TEMPERATURE_K, "gram", pressure_bar=PRESSURE_bar), True),
    ("bulk_modulus", lambda: BulkModulus(TEMPERATURE_K), True),
    ("lattice_a", lambda: LatticeParameter("a", repeats=2), True),
    ("lattice_gamma", lambda: LatticeParameter("gamma"), True),
]


def reweighted(potential: LennardJones, trajectory: Trajectory, obs: Observable, gradient: bool) -> float:
    static = None if obs.depends_on_parameters else obs.evaluate(trajectory)
    step = reweighted_loss_and_gradient(potential, trajectory, [obs], [static], lambda p: p[0], chunk_size=4,
                                        compute_gradient=gradient)
    return float(step.predictions[0])


@pytest.mark.parametrize("label,make,npt", CASES, ids=[c[0] for c in CASES])
def test_reweighted_gradient_equals_finite_differences(label, make, npt):
    trajectory = frozen_trajectory(npt)
    obs = make()
    potential = lj()
    potential.zero_grad()
    value = reweighted(potential, trajectory, obs, gradient=True)
    params = [potential.log_sigma, potential.log_epsilon]  # the order of trainable_parameters
    analytic = [float(p.grad[0]) for p in params]  # type: ignore[index]
    numeric = []
    for p in params:
        h = 1e-5
        with torch.no_grad():
            p += h
            plus = reweighted(potential, trajectory, obs, gradient=False)
            p -= 2 * h
            minus = reweighted(potential, trajectory, obs, gradient=False)
            p += h
        numeric.append((plus - minus) / (2 * h))
    print(f"{label}: value {value:.6g}, gradient {analytic}, finite differences {numeric}")
    scale = max(abs(x) for x in numeric)
    assert scale > 0
    for a, n in zip(analytic, numeric):
        assert a == pytest.approx(n, rel=1e-5, abs=1e-6 * scale)
    # the Gauss-Newton Jacobian is the same derivative (trainable parameters: log σ, log ε)
    static = None if obs.depends_on_parameters else obs.evaluate(trajectory)
    target = Target(name=label, observable=obs, reference=torch.tensor(value))
    model = linearize(potential, trajectory, [target], [static], chunk_size=4)
    jac = model.jacobians[0].reshape(-1)
    assert float(model.predictions[0]) == pytest.approx(value, rel=1e-10)
    for a, n in zip(jac.tolist(), numeric):
        assert a == pytest.approx(n, rel=1e-5, abs=1e-6 * scale)


def test_weights_are_not_uniform():
    trajectory = frozen_trajectory(npt=False)
    step = reweighted_loss_and_gradient(lj(), trajectory, [LatticeParameter("a")], [torch.zeros(6)],
                                        lambda p: p[0], compute_gradient=False)
    spread = float(step.log_weights.max() - step.log_weights.min())
    assert spread > 0.1  # the largest weight exceeds the smallest by more than 10 %
