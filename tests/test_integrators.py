"""Tests of the batched MD integrators against closed forms and statistical expectations.

Statistical tolerances are a few standard errors estimated from block averages;
seeds are printed so that a failure can be reproduced.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from ase.build import bulk

from exprefine.potentials import LennardJones
from exprefine.potentials.base import Potential
from exprefine.sampling import (
    MDState,
    baoab_step,
    conserved_energy_eV,
    initialize,
    initialize_velocities,
    kinetic_energy_eV,
    nose_hoover_chain_step,
    temperature_K,
    velocity_verlet_step,
)
from exprefine.sampling.integrators import com_velocity
from exprefine.state import State, concatenate, from_atoms, replicate
from exprefine.units import AMU_A2_PER_FS2_IN_eV, BOLTZMANN_eV_per_K

torch.set_num_threads(1)

AR_MASS_AMU = 39.948


def argon(repeat: int = 2) -> State:
    """fcc argon near its LJ equilibrium density (32 atoms for repeat=2)."""
    return from_atoms(bulk("Ar", "fcc", a=5.26, cubic=True).repeat(repeat))


def lj_argon() -> LennardJones:
    return LennardJones(["Ar"], 3.405, 0.0103, cutoff_A=8.0)


class Tether(Potential):
    """E = ½ k Σ_i |x_i − x0_i|² per system: independent 3-D harmonic oscillators."""

    def __init__(self, k_eV_per_A2: float, x0_A: torch.Tensor) -> None:
        super().__init__()
        self.k = k_eV_per_A2
        self.register_buffer("x0", x0_A)

    def energy(self, state: State) -> torch.Tensor:
        e = 0.5 * self.k * ((state.positions - self.x0) ** 2).sum(dim=1)
        return torch.zeros(state.n_systems, dtype=e.dtype).index_add(0, state.system_idx, e)


def free_atoms(n: int) -> State:
    return State(
        positions=torch.zeros(n, 3, dtype=torch.float64),
        cell=torch.eye(3, dtype=torch.float64) * 50.0,
        pbc=torch.zeros(3, dtype=torch.bool),
        atomic_numbers=torch.full((n,), 18),
        masses=torch.full((n,), AR_MASS_AMU, dtype=torch.float64),
        system_idx=torch.zeros(n, dtype=torch.long),
    )


def block_mean_and_se(series: torch.Tensor, n_blocks: int) -> tuple[float, float]:
    """Mean and standard error of a [n_steps, n_replicas] series from block means (blocks × replicas)."""
    n = (series.shape[0] // n_blocks) * n_blocks
    blocks = series[:n].reshape(n_blocks, -1, *series.shape[1:]).mean(dim=1).flatten()
    return float(blocks.mean()), float(blocks.std() / math.sqrt(blocks.numel()))


# ---------------------------------------------------------------------- initial velocities
def test_initialize_velocities_exact_temperature_zero_com_per_system():
    seed = 11
    print("seed", seed)
    batch = concatenate([argon(2), from_atoms(bulk("Ar", "fcc", a=5.26, cubic=True))])  # 32 + 4 atoms
    targets = torch.tensor([40.0, 120.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    st = initialize_velocities(batch, targets, g)
    torch.testing.assert_close(temperature_K(st), targets, rtol=1e-12, atol=0.0)
    assert com_velocity(st).abs().max() < 1e-14
    other = initialize_velocities(batch, targets, torch.Generator().manual_seed(seed + 1))
    assert not torch.equal(st.velocities, other.velocities)


def test_kinetic_energy_matches_ase_units():
    g = torch.Generator().manual_seed(3)
    st = initialize_velocities(argon(2), 75.0, g)
    ase_ke = st.to_atoms()[0].get_kinetic_energy()
    assert float(kinetic_energy_eV(st)) == pytest.approx(ase_ke, rel=1e-10)
    # 3N − 3 degrees of freedom: KE = (3N − 3)/2 k_B T exactly after rescaling
    assert float(kinetic_energy_eV(st)) == pytest.approx(0.5 * (3 * 32 - 3) * BOLTZMANN_eV_per_K * 75.0, rel=1e-12)


# ---------------------------------------------------------------------- NVE
def _nve_energy_series(md: MDState, potential: Potential, dt_fs: float, total_fs: float) -> torch.Tensor:
    energies = []
    for _ in range(int(round(total_fs / dt_fs))):
        md = velocity_verlet_step(md, potential, timestep_fs=dt_fs)
        energies.append(float(conserved_energy_eV(md)))
    return torch.tensor(energies, dtype=torch.float64)


def test_nve_energy_conservation_and_dt_squared_scaling():
    """Velocity Verlet conserves a shadow energy: total-energy fluctuations scale as dt².

    Doubling dt should multiply the fluctuation by 4; we accept 2.5–6 to allow for
    higher-order terms and finite sampling of the fluctuation.
    """
    seed = 5
    print("seed", seed)
    lj = lj_argon()
    md0 = initialize(argon(2), lj, 80.0, torch.Generator().manual_seed(seed))
    e5 = _nve_energy_series(md0, lj, 5.0, 2000.0)
    e10 = _nve_energy_series(md0, lj, 10.0, 2000.0)
    kinetic0 = float(kinetic_energy_eV(md0.state))
    ratio = float(e10.std() / e5.std())
    print(f"std(E) dt=5: {float(e5.std()):.3e} eV, dt=10: {float(e10.std()):.3e} eV, ratio {ratio:.2f}")
    assert 2.5 < ratio < 6.0
    # conservation: fluctuation and drift are tiny compared with the kinetic energy exchanged
    assert float(e5.std()) < 1e-3 * kinetic0
    assert abs(float(e5[-1] - e5[0])) < 2e-3 * kinetic0


def test_batched_replicas_advance_like_separate_runs():
    seed = 21
    print("seed", seed)
    lj = lj_argon()
    g = torch.Generator().manual_seed(seed)
    a = initialize_velocities(argon(2), 60.0, g)
    b = initialize_velocities(argon(2), 90.0, g)
    b = replace(b, positions=b.positions + 0.05 * torch.randn(b.positions.shape, generator=g, dtype=torch.float64))
    separate = []
    for st in (a, b):
        md = initialize(st, lj, 0.0)
        for _ in range(30):
            md = velocity_verlet_step(md, lj, timestep_fs=10.0)
        separate.append(md)
    md = initialize(concatenate([a, b]), lj, 0.0)
    for _ in range(30):
        md = velocity_verlet_step(md, lj, timestep_fs=10.0)
    assert md.step == 30
    torch.testing.assert_close(md.state.positions, torch.cat([s.state.positions for s in separate]), rtol=0, atol=1e-11)
    torch.testing.assert_close(md.state.velocities, torch.cat([s.state.velocities for s in separate]), rtol=0, atol=1e-13)
    torch.testing.assert_close(md.energy_eV, torch.cat([s.energy_eV for s in separate]), rtol=0, atol=1e-11)


def test_steps_reject_bad_timestep():
    lj = lj_argon()
    md = initialize(argon(2), lj, 50.0, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="timestep_fs"):
        velocity_verlet_step(md, lj, timestep_fs=0.0)
    with pytest.raises(ValueError, match="kT_eV"):
        baoab_step(md, lj, timestep_fs=1.0, kT_eV=torch.ones(3), friction_per_fs=0.01)


# ---------------------------------------------------------------------- Langevin BAOAB
def test_baoab_harmonic_tether_closed_forms():
    """BAOAB on harmonic oscillators: ⟨k x²⟩ = kT exactly for any dt, ⟨m v²⟩ = kT (1 − (ω dt/2)²).

    ω dt ≈ 0.49 makes the kinetic bias (6 %) many standard errors large, so the
    test also distinguishes the BAOAB splitting from others.
    """
    seed = 7
    print("seed", seed)
    n, k, kT = 200, 0.1, 0.01
    omega = math.sqrt(k / (AR_MASS_AMU * AMU_A2_PER_FS2_IN_eV))
    dt = 100.0
    pot = Tether(k, torch.zeros(n, 3, dtype=torch.float64))
    g = torch.Generator().manual_seed(seed)
    md = initialize(free_atoms(n), pot, kT / BOLTZMANN_eV_per_K, g, remove_com_momentum=False)
    x2, v2 = [], []
    for step in range(2200):
        md = baoab_step(md, pot, timestep_fs=dt, kT_eV=kT, friction_per_fs=omega, generator=g, remove_com_momentum=False)
        if step >= 200:
            x2.append(k * (md.state.positions**2).mean() / kT)
            v2.append(AR_MASS_AMU * AMU_A2_PER_FS2_IN_eV * (md.state.velocities**2).mean() / kT)
    x_mean, x_se = block_mean_and_se(torch.stack(x2)[:, None], 20)
    v_mean, v_se = block_mean_and_se(torch.stack(v2)[:, None], 20)
    v_expected = 1.0 - (omega * dt / 2) ** 2
    print(f"k<x²>/kT = {x_mean:.4f} ± {x_se:.4f} (1); m<v²>/kT = {v_mean:.4f} ± {v_se:.4f} ({v_expected:.4f})")
    assert abs(x_mean - 1.0) < 4 * x_se
    assert abs(v_mean - v_expected) < 4 * v_se
    assert abs(v_mean - 1.0) > 8 * v_se  # the dt bias is resolved, so the previous check has teeth


def test_baoab_lj_kinetic_energy_equipartition():
    """⟨KE⟩ = (3N − 3)/2 kT for Langevin-thermostatted LJ argon replicas (COM momentum stays zero)."""
    seed = 13
    print("seed", seed)
    lj = lj_argon()
    n_rep, T = 4, 80.0
    kT = BOLTZMANN_eV_per_K * T
    g = torch.Generator().manual_seed(seed)
    md = initialize(replicate(argon(2), n_rep), lj, T, g)
    ke = []
    for step in range(1200):
        md = baoab_step(md, lj, timestep_fs=5.0, kT_eV=kT, friction_per_fs=0.02, generator=g)
        if step >= 200:
            ke.append(kinetic_energy_eV(md.state))
    expected = 0.5 * (3 * 32 - 3) * kT
    mean, se = block_mean_and_se(torch.stack(ke) / expected, 10)
    print(f"<KE>/expected = {mean:.4f} ± {se:.4f}")
    assert abs(mean - 1.0) < 4 * se
    assert se < 0.02  # the test resolves a 2 % error
    assert com_velocity(md.state).abs().max() < 1e-12


# ---------------------------------------------------------------------- Nosé–Hoover chain
def test_nose_hoover_chain_conserved_quantity_and_temperature():
    seed = 17
    print("seed", seed)
    lj = lj_argon()
    n_rep, T, dt = 4, 60.0, 10.0
    kT = BOLTZMANN_eV_per_K * T
    g = torch.Generator().manual_seed(seed)
    md = initialize(replicate(argon(2), n_rep), lj, 2 * T, g)  # lattice start: half the KE goes to PE
    temps, extended, physical = [], [], []
    for _ in range(1000):
        md = nose_hoover_chain_step(md, lj, timestep_fs=dt, kT_eV=kT, tau_fs=100.0)
        temps.append(temperature_K(md.state))
        extended.append(conserved_energy_eV(md))
        physical.append(kinetic_energy_eV(md.state) + md.energy_eV)
    assert md.thermostat is not None and md.thermostat.chain_length >= 3
    extended_t, physical_t = torch.stack(extended), torch.stack(physical)
    drift = (extended_t - extended_t[0]).abs().max()
    thermal = 0.5 * (3 * 32 - 3) * kT
    print(f"max |ΔH| = {float(drift):.2e} eV; std(KE+U) = {float(physical_t.std(0).min()):.2e} eV")
    assert drift < 0.01 * thermal
    # the thermostat really exchanges energy, many times more than the error of H
    assert bool((physical_t.std(0) > 10 * drift).all())
    mean, se = block_mean_and_se(torch.stack(temps)[300:], 7)
    print(f"<T> = {mean:.2f} ± {se:.2f} K (target {T} K)")
    assert abs(mean - T) < 4 * se
    assert se < 0.03 * T
