"""Pressure: virial against ASE's Lennard-Jones stress, the ideal-gas term, parameter gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.lj import LennardJones as AseLennardJones

from exprefine.observables import Pressure
from exprefine.potentials import LennardJones
from exprefine.state import from_atoms
from exprefine.trajectory import Trajectory
from exprefine.units import BOLTZMANN_eV_per_K, eV_PER_A3_IN_bar

SIGMA_A = 3.405
EPSILON_eV = 119.8 * BOLTZMANN_eV_per_K
CUTOFF_A = 8.5
TEMPERATURE_K = 85.0


def argon_frames(n_frames: int = 2, seed: int = 0) -> list[Atoms]:
    """Thermally displaced fcc argon (256 atoms), the second frame sheared into a triclinic cell."""
    rng = np.random.default_rng(seed)
    frames = []
    for f in range(n_frames):
        atoms = bulk("Ar", "fcc", a=5.26 + 0.05 * f, cubic=True).repeat(4)
        if f % 2 == 1:
            cell = atoms.cell.array.copy()
            cell[1, 0] += 0.8
            cell[2, 1] -= 0.5
            atoms.set_cell(cell, scale_atoms=True)
        atoms.positions += rng.normal(scale=0.12, size=atoms.positions.shape)
        frames.append(atoms)
    return frames


def lj() -> LennardJones:
    return LennardJones(["Ar"], sigma_A=SIGMA_A, epsilon_eV=EPSILON_eV, cutoff_A=CUTOFF_A)


def test_matches_ase_lennard_jones_stress_plus_kinetic_term():
    frames = argon_frames(2)
    state = from_atoms(frames)
    with torch.no_grad():
        pressure = Pressure(TEMPERATURE_K).per_frame(state, lj())
    assert pressure.shape == (2,) and not pressure.requires_grad
    for f, atoms in enumerate(frames):
        atoms = atoms.copy()
        atoms.calc = AseLennardJones(sigma=SIGMA_A, epsilon=EPSILON_eV, rc=CUTOFF_A, smooth=False)
        stress = atoms.get_stress(voigt=False)
        volume = atoms.get_volume()
        expected = (len(atoms) * BOLTZMANN_eV_per_K * TEMPERATURE_K / volume - np.trace(stress) / 3.0) * eV_PER_A3_IN_bar
        assert float(pressure[f]) == pytest.approx(expected, rel=1e-9, abs=1e-6)
    # A compressed, displaced solid at 85 K: the virial part is large (hundreds of bar at least).
    assert float(pressure.abs().min()) > 100.0


def test_ideal_gas_term_in_SI():
    # Two atoms farther apart than the cutoff: no virial, P = N k_B T / V.
    atoms = Atoms("Ar2", positions=[[0.0, 0.0, 0.0], [15.0, 0.0, 0.0]], cell=[40.0, 40.0, 40.0], pbc=True)
    temperature = 300.0
    p = Pressure(temperature).per_frame(from_atoms(atoms), lj())
    k_B_J_per_K = 1.380649e-23
    expected_bar = 2 * k_B_J_per_K * temperature / (40.0e-10) ** 3 / 1e5
    assert float(p.detach()[0]) == pytest.approx(expected_bar, rel=1e-9)


def test_gradient_matches_finite_differences():
    state = from_atoms(argon_frames(2, seed=3))
    potential = lj()
    obs = Pressure(TEMPERATURE_K)
    weights = torch.tensor([0.3, 0.7], dtype=torch.float64)

    def mean_pressure() -> torch.Tensor:
        return obs.reduce(obs.per_frame(state, potential), weights)

    value = mean_pressure()
    assert value.requires_grad
    grad_eps, grad_sigma = torch.autograd.grad(value, [potential.log_epsilon, potential.log_sigma])

    def finite_difference(param: torch.nn.Parameter, h: float) -> float:
        with torch.no_grad():
            param += h
            plus = float(mean_pressure())
            param -= 2 * h
            minus = float(mean_pressure())
            param += h
        return (plus - minus) / (2 * h)

    assert float(grad_eps[0]) == pytest.approx(finite_difference(potential.log_epsilon, 1e-4), rel=1e-7)
    assert float(grad_sigma[0]) == pytest.approx(finite_difference(potential.log_sigma, 1e-5), rel=1e-6)
    # The virial is linear in ε: d⟨P⟩/d log ε equals the virial part of ⟨P⟩.
    n = state.n_atoms_per_system.double()
    kinetic = obs.reduce(n * BOLTZMANN_eV_per_K * TEMPERATURE_K / state.volume_A3() * eV_PER_A3_IN_bar, weights)
    assert float(grad_eps[0]) == pytest.approx(float((value - kinetic).detach()), rel=1e-9)


def _trajectory(frames: list[Atoms], temperature_K: float) -> Trajectory:
    state = from_atoms(frames)
    n = len(frames[0])
    return Trajectory(
        positions_A=state.positions.reshape(len(frames), n, 3),
        cells_A=state.cell,
        pbc=torch.ones(3, dtype=torch.bool),
        atomic_numbers=state.atomic_numbers[:n],
        masses_amu=state.masses[:n],
        energies_eV=torch.zeros(len(frames), dtype=torch.float64),
        kT_eV=BOLTZMANN_eV_per_K * temperature_K,
        fingerprint="test",
    )


def test_evaluate_on_trajectory_and_temperature_check():
    frames = argon_frames(2, seed=4)
    traj = _trajectory(frames, TEMPERATURE_K)
    obs = Pressure(TEMPERATURE_K)
    assert obs.unit == "bar" and obs.depends_on_parameters and obs.grid() is None
    values = obs.evaluate(traj, lj(), chunk_size=1)
    assert not values.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(values, obs.per_frame(from_atoms(frames), lj()))
    with pytest.raises(ValueError, match=r"temperature_K = 120 K.*sampled at 85 K"):
        Pressure(120.0).check(traj)
    with pytest.raises(ValueError, match="needs the potential"):
        obs.per_frame(from_atoms(frames))
    with pytest.raises(ValueError, match="temperature_K must be positive"):
        Pressure(-1.0)
