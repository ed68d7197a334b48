"""Stochastic cell rescaling (C-rescale; Bernetti & Bussi, J. Chem. Phys. 153, 114107 (2020)).

A first-order stochastic equation for the logarithm of the volume,

    dε = −(β_T/τ_p) (P₀ − P_int − k_BT/V) dt + √(2 k_BT β_T dt / (V τ_p)) ξ,     ε = ln V,

with β_T an (estimated) isothermal compressibility, τ_p the relaxation time and
P_int the instantaneous pressure (kinetic + virial). Positions and cell are scaled
by μ = exp(dε/3) and velocities by 1/μ. It samples the isothermal–isobaric ensemble
with a thermostat for the particles (here BAOAB or a Nosé–Hoover chain), and it
relaxes the volume without the oscillations of second-order barostats; β_T and
τ_p only set the speed of volume fluctuations, not their size.

Couplings: ``isotropic`` (one ε for the volume); ``semi_isotropic`` (x and y
together, z alone: layered materials, whose interlayer spacing must move
independently of the in-plane lattice); ``anisotropic`` (x, y, z independently);
``uniaxial_z`` (z alone, x and y fixed: the interlayer spacing of a layered crystal
whose in-plane lattice is known, or whose model's in-plane stress is not trusted).
For the last two each Cartesian axis α moves by

    dε_α = −(β_T/3τ_p) (P₀ − P_αα − k_BT/V) dt + √(2 k_BT β_T dt / (3 V τ_p)) ξ_α,

(the semi-isotropic x and y increments averaged; uniaxial_z keeps only the z equation,
which samples the ensemble at fixed L_x, L_y), i.e. overdamped Langevin
dynamics on ln L_α whose stationary law is exp(−β(U + P₀V)) V^N; only diagonal
strains are applied, so cell angles between a layer plane and z are kept.

Units: pressure eV/Å³, compressibility Å³/eV, times fs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..potentials.base import Potential
from ..state import State
from ..units import AMU_A2_PER_FS2_IN_eV, eV_PER_A3_IN_bar
from .integrators import MDState, velocities_of

COUPLINGS = ("isotropic", "semi_isotropic", "anisotropic", "uniaxial_z")


@dataclass
class BarostatSettings:
    """Stochastic cell rescaling.

    Attributes:
        pressure_bar: target pressure P₀ in bar.
        compressibility_per_bar: β_T used by the barostat (liquids ≈ 5e-5, soft matter
            1e-4–1e-3; only the relaxation speed depends on it).
        time_fs: relaxation time τ_p in fs.
        interval_steps: MD steps between cell updates (each costs one force evaluation after the
            scaling; the stress comes with the forces of the step before).
        coupling: ``isotropic``, ``semi_isotropic`` (xy | z), ``anisotropic`` (x | y | z) or
            ``uniaxial_z`` (z only; x, y fixed).
    """

    pressure_bar: float
    compressibility_per_bar: float = 4.5e-5
    time_fs: float = 1000.0
    interval_steps: int = 10
    coupling: str = "isotropic"

    def __post_init__(self) -> None:
        if self.coupling not in COUPLINGS:
            raise ValueError(f"unknown barostat coupling {self.coupling!r}; choose one of {', '.join(COUPLINGS)}")
        if not self.compressibility_per_bar > 0:
            raise ValueError(f"compressibility_per_bar must be positive, got {self.compressibility_per_bar}")
        if not self.time_fs > 0:
            raise ValueError(f"barostat time_fs must be positive, got {self.time_fs}")
        if self.interval_steps < 1:
            raise ValueError(f"barostat interval_steps must be ≥ 1, got {self.interval_steps}")

    @property
    def pressure_eV_per_A3(self) -> float:
        return self.pressure_bar / eV_PER_A3_IN_bar

    @property
    def compressibility_A3_per_eV(self) -> float:
        return self.compressibility_per_bar * eV_PER_A3_IN_bar


def pressure_tensor_eV_per_A3(state: State, stress_eV_per_A3: torch.Tensor) -> torch.Tensor:
    """[n_systems, 3, 3] instantaneous pressure tensor: Σ m v v / V − σ (kinetic + virial)."""
    v = velocities_of(state)
    m = state.masses.to(v.dtype) * AMU_A2_PER_FS2_IN_eV
    per_atom = m[:, None, None] * v[:, :, None] * v[:, None, :]
    kinetic = torch.zeros(state.n_systems, 3, 3, dtype=v.dtype, device=v.device)
    kinetic.index_add_(0, state.system_idx, per_atom)
    volume = state.volume_A3().to(v.dtype)
    return kinetic / volume[:, None, None] - stress_eV_per_A3.to(v.dtype)


def log_strain_increments(
    pressure_tensor: torch.Tensor,
    volume_A3: torch.Tensor,
    *,
    kT_eV: float,
    settings: BarostatSettings,
    dt_fs: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """[n_systems, 3] increments of ln L_x, ln L_y, ln L_z over one barostat interval ``dt_fs``."""
    n = volume_A3.shape[0]
    dtype = pressure_tensor.dtype
    beta_T = settings.compressibility_A3_per_eV
    tau = settings.time_fs
    p0 = settings.pressure_eV_per_A3
    noise = torch.randn((n, 3), generator=generator, dtype=dtype, device=pressure_tensor.device)
    diag = torch.diagonal(pressure_tensor, dim1=1, dim2=2)
    if settings.coupling == "isotropic":
        p_int = diag.mean(dim=1)
        d_eps = (-(beta_T / tau) * (p0 - p_int - kT_eV / volume_A3) * dt_fs
                 + torch.sqrt(2.0 * kT_eV * beta_T * dt_fs / (volume_A3 * tau)) * noise[:, 0])
        return (d_eps / 3.0)[:, None].expand(n, 3).clone()
    drift = -(beta_T / (3.0 * tau)) * (p0 - diag - (kT_eV / volume_A3)[:, None]) * dt_fs
    diffusion = torch.sqrt(2.0 * kT_eV * beta_T * dt_fs / (3.0 * volume_A3 * tau))[:, None] * noise
    d = drift + diffusion
    if settings.coupling == "semi_isotropic":
        xy = 0.5 * (d[:, 0] + d[:, 1])
        d = torch.stack([xy, xy, d[:, 2]], dim=1)
    elif settings.coupling == "uniaxial_z":
        d = torch.stack([torch.zeros_like(d[:, 2]), torch.zeros_like(d[:, 2]), d[:, 2]], dim=1)
    return d


def rescale(state: State, log_strain: torch.Tensor) -> State:
    """Scale Cartesian positions and cell rows by μ_α = exp(dε_α) per axis and velocities by 1/μ_α.

    Fractional coordinates are unchanged; ``log_strain`` is [n_systems, 3].
    """
    mu = torch.exp(log_strain).to(state.positions.dtype)
    mu_atom = mu[state.system_idx]
    return replace(
        state,
        positions=state.positions * mu_atom,
        cell=state.cell * mu[:, None, :],
        velocities=None if state.velocities is None else state.velocities / mu_atom,
    )


@torch.no_grad()
def c_rescale_step(
    md: MDState,
    potential: Potential,
    *,
    kT_eV: float,
    settings: BarostatSettings,
    dt_fs: float,
    generator: torch.Generator | None = None,
) -> MDState:
    """One cell update of every system after ``dt_fs`` of particle dynamics; forces recomputed.

    Args:
        md: the state after the thermostatted particle steps; its ``stress_eV_per_A3``, when the
            last step computed it, saves the stress evaluation here.
        potential: gives the stress at the current state and the forces after scaling.
        kT_eV: thermal energy of the ensemble.
        settings: target pressure, β_T, τ_p, coupling.
        dt_fs: time since the previous cell update (interval × timestep).
        generator: random stream of the barostat noise.
    """
    state = md.state
    if not bool(state.pbc.all()):
        raise ValueError("constant pressure needs cells periodic in all three directions")
    stress = md.stress_eV_per_A3
    if stress is None:
        stress = potential.compute(state, forces=False, stress=True).stress_eV_per_A3
        assert stress is not None
    tensor = pressure_tensor_eV_per_A3(state, stress)
    volume = state.volume_A3().to(tensor.dtype)
    d = log_strain_increments(tensor, volume, kT_eV=kT_eV, settings=settings, dt_fs=dt_fs, generator=generator)
    scaled = rescale(state, d)
    out = potential.compute(scaled, forces=True)
    assert out.forces_eV_per_A is not None
    return MDState(scaled, out.forces_eV_per_A, out.energy_eV, md.step, md.thermostat)
