"""Constant pressure: stochastic cell rescaling against the equation of state, and NPT reweighting."""

from __future__ import annotations

import pytest
import torch

import exprefine.sampling.sampler as sampler_module
from conftest import EPSILON_TRUE_K, SIGMA_TRUE_A, argon_lattice, argon_lj, one_thread
from exprefine.observables import Density, Pressure
from exprefine.potentials import LennardJones
from exprefine.refine.targets import Target, total_loss
from exprefine.reweighting import frame_energies, log_weights, reweighted_loss_and_gradient
from exprefine.sampling import BarostatSettings, SamplerSettings, sample
from exprefine.sampling.barostat import log_strain_increments, rescale
from exprefine.state import from_atoms
from exprefine.units import BOLTZMANN_eV_per_K, eV_PER_A3_IN_bar, kelvin_to_eV

# supercritical LJ argon (T* ≈ 1.7, ρ* ≈ 0.59): fast decorrelation, large pressure signal
TEMPERATURE_K = 200.0
DENSITY_PER_A3 = 0.015


def _block_se(x: torch.Tensor, n_blocks: int = 10) -> float:
    """Standard error of the mean from block averages."""
    n = len(x) // n_blocks * n_blocks
    blocks = x[:n].reshape(n_blocks, -1).mean(1)
    return float(blocks.std() / n_blocks ** 0.5)


@pytest.fixture(scope="module")
def nvt_and_npt():
    """NVT at ρ₀ gives ⟨P⟩; NPT at that pressure must give back ρ₀."""
    with one_thread():
        return _nvt_and_npt()


def _nvt_and_npt():
    potential = argon_lj(cutoff_A=8.0)
    state = from_atoms(argon_lattice(3, density_per_A3=DENSITY_PER_A3))
    nvt = SamplerSettings(temperature_K=TEMPERATURE_K, timestep_fs=5.0, friction_per_ps=5.0,
                          n_equilibration_steps=1000, n_production_steps=5000, stride_steps=20, seed=1)
    r_nvt = sample(potential, state, nvt)
    pressure = Pressure(TEMPERATURE_K).evaluate(r_nvt.trajectory, potential).to(torch.float64)
    barostat = BarostatSettings(pressure_bar=float(pressure.mean()), compressibility_per_bar=1e-3,
                                time_fs=500.0, interval_steps=10)
    npt = SamplerSettings(temperature_K=TEMPERATURE_K, timestep_fs=5.0, friction_per_ps=5.0,
                          n_equilibration_steps=1000, n_production_steps=5000, stride_steps=20, seed=2,
                          barostat=barostat)
    r_npt = sample(potential, r_nvt.final, npt)
    return potential, pressure, r_npt


def test_npt_reproduces_the_nvt_equation_of_state(nvt_and_npt):
    """⟨ρ⟩_NPT(P = ⟨P⟩_NVT(ρ₀)) = ρ₀ within 4 combined standard errors.

    The error of ⟨P⟩ propagates into density through the compressibility, which the NPT
    volume fluctuations give: β_T = ⟨δV²⟩ / (k_B T ⟨V⟩).
    """
    _, pressure, r_npt = nvt_and_npt
    traj = r_npt.trajectory
    assert traj.pressure_eV_per_A3 == pytest.approx(float(pressure.mean()) / eV_PER_A3_IN_bar)
    rho = Density("number").evaluate(traj)
    volume = torch.linalg.det(traj.cells_A.to(torch.float64))
    assert float(volume.std() / volume.mean()) > 1e-3  # the volume does move
    kT = BOLTZMANN_eV_per_K * TEMPERATURE_K
    beta_T_per_bar = float(volume.var() / (kT * volume.mean())) / eV_PER_A3_IN_bar
    se_rho = (_block_se(rho) ** 2 + (DENSITY_PER_A3 * beta_T_per_bar * _block_se(pressure)) ** 2) ** 0.5
    assert abs(float(rho.mean()) - DENSITY_PER_A3) < 4 * se_rho, (float(rho.mean()), se_rho)
    # and the standard error itself is small enough for this to mean something (< 2 % of ρ)
    assert se_rho < 0.02 * DENSITY_PER_A3
    # isotropic coupling keeps the cubic cell cubic
    cells = traj.cells_A
    assert torch.allclose(cells[:, 0, 0], cells[:, 1, 1], rtol=1e-12)
    assert float(cells[:, 0, 1].abs().max()) < 1e-12


def test_npt_reweighting_gradient_equals_finite_differences(nvt_and_npt):
    """d⟨ρ⟩/dθ on frozen NPT frames (PV cancels in U_θ − U_ref of the same frame)."""
    _, _, r_npt = nvt_and_npt
    traj = r_npt.trajectory
    density = Density("mass")
    static = density.evaluate(traj).to(torch.float64)
    target = Target("rho", density, torch.tensor(0.95, dtype=torch.float64))
    potential = argon_lj(sigma_A=3.40, epsilon_K=121.0, cutoff_A=8.0)
    reweighted_loss_and_gradient(potential, traj, [density], [static], lambda p: total_loss([target], p))
    got = torch.stack([potential.log_sigma.grad[0], potential.log_epsilon.grad[0]]).to(torch.float64)

    def loss() -> float:
        w = log_weights(frame_energies(potential, traj), traj.energies_eV, traj.kT_eV).exp()
        return float(total_loss([target], [density.reduce(static, w)]))

    h = 1e-5
    fd = []
    for param in (potential.log_sigma, potential.log_epsilon):
        values = []
        for sign in (1, -1):
            with torch.no_grad():
                param[0] += sign * h
            values.append(loss())
            with torch.no_grad():
                param[0] -= sign * h
        fd.append((values[0] - values[1]) / (2 * h))
    assert torch.allclose(got, torch.tensor(fd, dtype=torch.float64), rtol=1e-5, atol=1e-12), (got, fd)


def test_rescale_keeps_fractional_coordinates_and_couplings_tie_axes():
    state = from_atoms(argon_lattice(2))
    state.velocities = torch.randn_like(state.positions)
    frac = torch.linalg.solve(state.cell[0].T, state.positions.T).T
    d = torch.tensor([[0.01, -0.02, 0.03]], dtype=state.positions.dtype)
    scaled = rescale(state, d)
    assert torch.allclose(torch.linalg.solve(scaled.cell[0].T, scaled.positions.T).T, frac, atol=1e-12)
    assert torch.allclose(scaled.velocities * torch.exp(d), state.velocities, atol=1e-12)
    # semi-isotropic: x and y move together, z alone; isotropic: all three together
    tensor = torch.diag(torch.tensor([1e-3, 2e-3, 5e-3], dtype=torch.float64))[None]
    volume = torch.tensor([1000.0], dtype=torch.float64)
    for coupling, tied in (("semi_isotropic", [(0, 1)]), ("isotropic", [(0, 1), (1, 2)])):
        settings = BarostatSettings(pressure_bar=1.0, coupling=coupling)
        inc = log_strain_increments(tensor, volume, kT_eV=0.01, settings=settings, dt_fs=10.0,
                                    generator=torch.Generator().manual_seed(0))
        for a, b in tied:
            assert float(inc[0, a]) == float(inc[0, b])
    inc = log_strain_increments(tensor, volume, kT_eV=0.01, settings=BarostatSettings(1.0, coupling="anisotropic"),
                                dt_fs=10.0, generator=torch.Generator().manual_seed(0))
    assert len(set(inc[0].tolist())) == 3
    # uniaxial z: x and y stay, z takes exactly the anisotropic z increment of the same noise
    z_only = log_strain_increments(tensor, volume, kT_eV=0.01, settings=BarostatSettings(1.0, coupling="uniaxial_z"),
                                   dt_fs=10.0, generator=torch.Generator().manual_seed(0))
    assert z_only[0, :2].tolist() == [0.0, 0.0] and float(z_only[0, 2]) == float(inc[0, 2]) != 0.0


def test_barostat_settings_are_validated():
    with pytest.raises(ValueError, match="coupling"):
        BarostatSettings(pressure_bar=1.0, coupling="xy")
    with pytest.raises(ValueError, match="thermostat"):
        SamplerSettings(integrator="velocity_verlet", temperature_K=100.0, timestep_fs=1.0, n_equilibration_steps=0,
                        n_production_steps=10, stride_steps=1, barostat=BarostatSettings(pressure_bar=1.0))


_ADVANCE = sampler_module.advance


def _advance_without_stress(md, potential, settings, generator, stress=False):
    return _ADVANCE(md, potential, settings, generator)


class _CountingLJ(LennardJones):
    """Lennard-Jones that counts its force and stress evaluations."""

    calls: list[tuple[bool, bool]]

    def compute(self, state, *, forces=True, stress=False, create_graph=False):
        self.calls.append((forces, stress))
        return super().compute(state, forces=forces, stress=stress, create_graph=create_graph)


def test_a_barostat_update_takes_its_stress_from_the_step_before(monkeypatch):
    """The step before each cell update computes the stress with its forces, so an update costs one
    potential evaluation (the forces after scaling), not two, and the trajectory is the one that a
    separate stress evaluation gives (the same numbers at the same positions)."""
    potential = _CountingLJ(["Ar"], SIGMA_TRUE_A, kelvin_to_eV(EPSILON_TRUE_K), cutoff_A=8.0)
    potential.calls = []
    state = from_atoms(argon_lattice(2, density_per_A3=DENSITY_PER_A3))
    settings = SamplerSettings(temperature_K=TEMPERATURE_K, timestep_fs=5.0, friction_per_ps=5.0,
                               n_equilibration_steps=0, n_production_steps=40, stride_steps=10, seed=3,
                               barostat=BarostatSettings(pressure_bar=100.0, compressibility_per_bar=1e-3,
                                                         time_fs=200.0, interval_steps=10))
    with one_thread():
        run = sample(potential, state, settings)
        # 1 initial + 40 steps + 4 updates, 4 steps with stress and no stress-only evaluation
        assert len(potential.calls) == 1 + 40 + 4
        assert potential.calls.count((True, True)) == 4 and (False, True) not in potential.calls
        assert run.final.stress_eV_per_A3 is None  # consumed by the last update, not carried on

        # the same run with the stress left out of the steps: the update evaluates it itself
        monkeypatch.setattr(sampler_module, "advance", _advance_without_stress)
        potential.calls = []
        again = sample(potential, state, settings)
    assert len(potential.calls) == 1 + 40 + 2 * 4 and potential.calls.count((False, True)) == 4
    assert torch.equal(again.trajectory.positions_A, run.trajectory.positions_A)
    assert torch.equal(again.trajectory.cells_A, run.trajectory.cells_A)
    assert not torch.equal(run.trajectory.cells_A[0], run.trajectory.cells_A[-1])  # the cell did move
    assert torch.equal(again.final.state.cell, run.final.state.cell)
