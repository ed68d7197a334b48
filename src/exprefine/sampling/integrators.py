"""Batched molecular-dynamics integrators: velocity Verlet (NVE), BAOAB Langevin and Nosé–Hoover chains.

Every step advances all systems of a batch at once; the systems are independent
(replicas or different structures). Positions are never wrapped back into the
cell, so displacements stay continuous; neighbour lists handle unwrapped positions.

Units: positions Å, velocities Å/fs, forces eV/Å, masses amu, time fs, energies eV.
Newton's law in these units: a = F / m / AMU_A2_PER_FS2_IN_eV  [Å/fs²].

Degrees of freedom: by default the centre-of-mass momentum of every system is zero
and stays zero (translation-invariant potentials), so a system of N atoms has
3N − 3 degrees of freedom. Pass ``remove_com_momentum=False`` where an external
field (a tether) breaks translation invariance; then all 3N are counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from ..potentials.base import Potential
from ..state import State
from ..units import AMU_A2_PER_FS2_IN_eV, BOLTZMANN_eV_per_K

#: Suzuki–Yoshida weights of order 3 for the thermostat sub-steps (w₁ + w₂ + w₃ = 1).
_SY_W1 = 1.0 / (2.0 - 2.0 ** (1.0 / 3.0))
SUZUKI_YOSHIDA_3 = (_SY_W1, 1.0 - 2.0 * _SY_W1, _SY_W1)


# ---------------------------------------------------------------------- helpers
def per_system(value: float | torch.Tensor, state: State, name: str = "value") -> torch.Tensor:
    """A float or a [n_systems] tensor as a [n_systems] tensor in the dtype/device of ``state``."""
    t = torch.as_tensor(value, dtype=state.dtype, device=state.device)
    if t.ndim == 0:
        return t.expand(state.n_systems).clone()
    if t.shape != (state.n_systems,):
        raise ValueError(f"{name} must be a float or have shape [{state.n_systems}], got {tuple(t.shape)}")
    return t


def _sum_per_system(per_atom: torch.Tensor, state: State) -> torch.Tensor:
    """[n_systems] sum of a per-atom quantity [n_atoms] (or [n_atoms, ...] summed over trailing dims)."""
    if per_atom.ndim > 1:
        per_atom = per_atom.reshape(per_atom.shape[0], -1).sum(dim=1)
    out = torch.zeros(state.n_systems, dtype=per_atom.dtype, device=per_atom.device)
    return out.index_add(0, state.system_idx, per_atom)


def com_velocity(state: State, velocities: torch.Tensor | None = None) -> torch.Tensor:
    """[n_systems, 3] centre-of-mass velocity Σ m v / Σ m of each system in Å/fs."""
    v = state.velocities if velocities is None else velocities
    if v is None:
        raise ValueError("state has no velocities")
    m = state.masses.to(v.dtype)
    momentum = torch.zeros(state.n_systems, 3, dtype=v.dtype, device=v.device)
    momentum = momentum.index_add(0, state.system_idx, m[:, None] * v)
    total_mass = _sum_per_system(m, state)
    return momentum / total_mass[:, None]


def _remove_com(state: State, velocities: torch.Tensor) -> torch.Tensor:
    """Velocities with the centre-of-mass velocity of each system subtracted."""
    return velocities - com_velocity(state, velocities)[state.system_idx]


def degrees_of_freedom(state: State, remove_com_momentum: bool = True) -> torch.Tensor:
    """[n_systems] kinetic degrees of freedom: 3N − 3 (COM momentum removed) or 3N."""
    n = state.n_atoms_per_system.to(state.dtype)
    return 3.0 * n - 3.0 if remove_com_momentum else 3.0 * n


def kinetic_energy_eV(state: State) -> torch.Tensor:
    """[n_systems] kinetic energy ½ Σ m v² in eV (velocities in Å/fs, masses in amu)."""
    if state.velocities is None:
        raise ValueError("state has no velocities")
    v = state.velocities
    per_atom = 0.5 * state.masses.to(v.dtype) * (v * v).sum(dim=1) * AMU_A2_PER_FS2_IN_eV
    return _sum_per_system(per_atom, state)


def temperature_K(state: State, remove_com_momentum: bool = True) -> torch.Tensor:
    """[n_systems] instantaneous temperature 2 KE / (n_dof k_B) in K (n_dof = 3N − 3 by default)."""
    return _temperature_K(state, remove_com_momentum)


def _temperature_K(state: State, remove_com_momentum: bool) -> torch.Tensor:
    # separate name: ``temperature_K`` is also the name of arguments below
    dof = degrees_of_freedom(state, remove_com_momentum)
    if bool((dof <= 0).any()):
        raise ValueError("a system has no kinetic degrees of freedom (one atom with COM momentum removed)")
    return 2.0 * kinetic_energy_eV(state) / (dof * BOLTZMANN_eV_per_K)


def initialize_velocities(
    state: State,
    temperature_K: float | torch.Tensor,
    generator: torch.Generator | None = None,
    remove_com_momentum: bool = True,
) -> State:
    """Copy of ``state`` with Maxwell–Boltzmann velocities at exactly ``temperature_K`` per system.

    Velocities are drawn per component with variance k_B T / m, the centre-of-mass
    momentum of each system is zeroed (unless ``remove_com_momentum`` is False), and
    every system is rescaled so its instantaneous temperature equals the target.

    Args:
        state: the batch (its velocities, if any, are replaced).
        temperature_K: a float or [n_systems] target temperatures in K.
        generator: random stream (torch default stream if None).
        remove_com_momentum: zero the COM momentum and count 3N − 3 degrees of freedom.
    """
    target = per_system(temperature_K, state, "temperature_K")
    if bool((target < 0).any()):
        raise ValueError(f"temperature must be ≥ 0 K, got {target.tolist()}")
    kT_atom = (BOLTZMANN_eV_per_K * target)[state.system_idx]
    sigma = torch.sqrt(kT_atom / state.masses.to(state.dtype) / AMU_A2_PER_FS2_IN_eV)
    noise = torch.randn(state.positions.shape, generator=generator, dtype=state.dtype, device=state.device)
    v = noise * sigma[:, None]
    if remove_com_momentum:
        v = _remove_com(state, v)
    drawn = replace(state, velocities=v)
    current = _temperature_K(drawn, remove_com_momentum)
    scale = torch.where(current > 0, torch.sqrt(target / current.clamp_min(1e-300)), torch.zeros_like(current))
    return replace(state, velocities=v * scale[state.system_idx][:, None])


# ---------------------------------------------------------------------- MD state
@dataclass
class NoseHooverChainState:
    """Per-system Nosé–Hoover chain thermostats (Martyna–Klein–Tuckerman 1992).

    Attributes:
        positions: [n_systems, chain_length] thermostat positions ξ_k (dimensionless).
        velocities_per_fs: [n_systems, chain_length] thermostat velocities v_ξk in 1/fs.
        masses_eV_fs2: [n_systems, chain_length] thermostat masses Q_k in eV·fs²
            (Q₁ = n_dof kT τ², Q_k = kT τ² for k ≥ 2).
        n_dof: [n_systems] degrees of freedom coupled to the first thermostat.
        kT_eV: [n_systems] thermal energy of the last step (enters the conserved quantity).
        n_substeps: number of n_c sub-steps per half step (each with Suzuki–Yoshida order 3).
    """

    positions: torch.Tensor
    velocities_per_fs: torch.Tensor
    masses_eV_fs2: torch.Tensor
    n_dof: torch.Tensor
    kT_eV: torch.Tensor
    n_substeps: int = 1

    @property
    def chain_length(self) -> int:
        return int(self.positions.shape[1])

    def energy_eV(self) -> torch.Tensor:
        """[n_systems] thermostat energy Σ ½ Q_k v_k² + n_dof kT ξ₁ + kT Σ_{k≥2} ξ_k in eV."""
        kinetic = 0.5 * (self.masses_eV_fs2 * self.velocities_per_fs**2).sum(dim=1)
        potential = self.n_dof * self.kT_eV * self.positions[:, 0] + self.kT_eV * self.positions[:, 1:].sum(dim=1)
        return kinetic + potential

    def conserved_energy_eV(self, kinetic_eV: torch.Tensor, potential_eV: torch.Tensor) -> torch.Tensor:
        """[n_systems] extended-system energy KE + U + thermostat energy, conserved by the NHC dynamics."""
        return kinetic_eV + potential_eV + self.energy_eV()


def init_nose_hoover_chain(
    state: State,
    kT_eV: float | torch.Tensor,
    tau_fs: float,
    chain_length: int = 3,
    n_substeps: int = 1,
    remove_com_momentum: bool = True,
) -> NoseHooverChainState:
    """Thermostats at rest with masses Q₁ = n_dof kT τ², Q_k = kT τ² (τ: thermostat period in fs)."""
    if chain_length < 1:
        raise ValueError(f"chain_length must be ≥ 1, got {chain_length}")
    if not tau_fs > 0:
        raise ValueError(f"thermostat time tau_fs must be positive, got {tau_fs}")
    if n_substeps < 1:
        raise ValueError(f"n_substeps must be ≥ 1, got {n_substeps}")
    kT = per_system(kT_eV, state, "kT_eV")
    if not bool((kT > 0).all()):
        raise ValueError(f"kT_eV must be positive for a Nosé–Hoover chain, got {kT.tolist()}")
    dof = degrees_of_freedom(state, remove_com_momentum)
    masses = (kT * tau_fs**2)[:, None].repeat(1, chain_length)
    masses[:, 0] = masses[:, 0] * dof
    zeros = torch.zeros(state.n_systems, chain_length, dtype=state.dtype, device=state.device)
    return NoseHooverChainState(
        positions=zeros.clone(),
        velocities_per_fs=zeros.clone(),
        masses_eV_fs2=masses,
        n_dof=dof,
        kT_eV=kT.clone(),
        n_substeps=n_substeps,
    )


@dataclass
class MDState:
    """Everything an integrator step needs.

    Attributes:
        state: positions (Å), velocities (Å/fs) and identity of the atoms.
        forces_eV_per_A: [n_atoms, 3] forces at ``state.positions``.
        energy_eV: [n_systems] potential energy at ``state.positions``.
        step: number of steps taken so far.
        thermostat: Nosé–Hoover chain state, or None for other integrators.
        stress_eV_per_A3: [n_systems, 3, 3] the potential's stress at ``state.positions`` when the
            step was asked to compute it with the forces (the step before a barostat update, which
            then needs no force call of its own), else None.
    """

    state: State
    forces_eV_per_A: torch.Tensor
    energy_eV: torch.Tensor
    step: int = 0
    thermostat: NoseHooverChainState | None = None
    stress_eV_per_A3: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.state.velocities is None:
            raise ValueError("MDState needs a state with velocities (use initialize())")
        if self.forces_eV_per_A.shape != self.state.positions.shape:
            raise ValueError("forces_eV_per_A must have the shape of positions")
        if self.energy_eV.shape != (self.state.n_systems,):
            raise ValueError(f"energy_eV must have shape [{self.state.n_systems}]")


def conserved_energy_eV(md: MDState) -> torch.Tensor:
    """[n_systems] KE + U, plus the thermostat energy when a Nosé–Hoover chain is attached."""
    kinetic = kinetic_energy_eV(md.state)
    if md.thermostat is None:
        return kinetic + md.energy_eV
    return md.thermostat.conserved_energy_eV(kinetic, md.energy_eV)


@torch.no_grad()
def initialize(
    state: State,
    potential: Potential,
    temperature_K: float | torch.Tensor,
    generator: torch.Generator | None = None,
    remove_com_momentum: bool = True,
) -> MDState:
    """MDState at step 0: velocities drawn at ``temperature_K`` if ``state`` has none, forces computed.

    Velocities already present in ``state`` are kept as they are.
    """
    if state.velocities is None:
        state = initialize_velocities(state, temperature_K, generator, remove_com_momentum)
    forces, energy, _ = _forces(state, potential)
    return MDState(state=state, forces_eV_per_A=forces, energy_eV=energy, step=0)


# ---------------------------------------------------------------------- integrator pieces
def _acceleration(state: State, forces_eV_per_A: torch.Tensor) -> torch.Tensor:
    """[n_atoms, 3] a = F / m in Å/fs²."""
    return forces_eV_per_A / (state.masses.to(forces_eV_per_A.dtype)[:, None] * AMU_A2_PER_FS2_IN_eV)


def velocities_of(state: State) -> torch.Tensor:
    """[n_atoms, 3] the velocities of a state that must have them (Å/fs)."""
    if state.velocities is None:
        raise ValueError("the state has no velocities: draw them first (initialize_velocities)")
    return state.velocities


def _kick(state: State, forces_eV_per_A: torch.Tensor, dt_fs: float) -> State:
    """B: v ← v + dt · F/m."""
    return replace(state, velocities=velocities_of(state) + dt_fs * _acceleration(state, forces_eV_per_A))


def _drift(state: State, dt_fs: float) -> State:
    """A: x ← x + dt · v (positions stay unwrapped)."""
    return replace(state, positions=state.positions + dt_fs * velocities_of(state))


def _forces(state: State, potential: Potential, stress: bool = False
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Forces, energies and (with ``stress``, from the same evaluation) the stress at ``state``."""
    out = potential.compute(state, forces=True, stress=stress)
    assert out.forces_eV_per_A is not None
    return out.forces_eV_per_A, out.energy_eV, out.stress_eV_per_A3


def _check_timestep(timestep_fs: float) -> None:
    if not (timestep_fs > 0 and math.isfinite(timestep_fs)):
        raise ValueError(f"timestep_fs must be positive and finite, got {timestep_fs}")


# ---------------------------------------------------------------------- velocity Verlet
@torch.no_grad()
def velocity_verlet_step(md: MDState, potential: Potential, *, timestep_fs: float, stress: bool = False) -> MDState:
    """One NVE velocity-Verlet step of every system: B(dt/2) A(dt) force B(dt/2).

    With ``stress`` the force evaluation also gives the stress at the new positions (``MDState.stress_eV_per_A3``).
    """
    _check_timestep(timestep_fs)
    state = _kick(md.state, md.forces_eV_per_A, 0.5 * timestep_fs)
    state = _drift(state, timestep_fs)
    forces, energy, stress_tensor = _forces(state, potential, stress)
    state = _kick(state, forces, 0.5 * timestep_fs)
    return MDState(state, forces, energy, md.step + 1, md.thermostat, stress_tensor)


# ---------------------------------------------------------------------- BAOAB Langevin
@torch.no_grad()
def baoab_step(
    md: MDState,
    potential: Potential,
    *,
    timestep_fs: float,
    kT_eV: float | torch.Tensor,
    friction_per_fs: float | torch.Tensor,
    generator: torch.Generator | None = None,
    remove_com_momentum: bool = True,
    stress: bool = False,
) -> MDState:
    """One BAOAB Langevin step (Leimkuhler & Matthews 2013) of every system.

    B(dt/2) A(dt/2) O(dt) A(dt/2) force B(dt/2), where O is the exact
    Ornstein–Uhlenbeck update v ← c v + √((1 − c²) kT/m) ξ with c = exp(−γ dt).

    With ``remove_com_momentum`` the centre-of-mass part of the random kick is
    projected out per system (an exact O-step on the 3N − 3 internal degrees of
    freedom), so a zero COM momentum stays zero for translation-invariant potentials.

    Args:
        md: current state.
        potential: the potential (forces from ``potential.compute``).
        timestep_fs: dt in fs.
        kT_eV: float or [n_systems] thermal energy in eV.
        friction_per_fs: γ in 1/fs, a float or [n_systems].
        generator: random stream for the noise.
        stress: also compute the stress at the new positions (``MDState.stress_eV_per_A3``).
    """
    _check_timestep(timestep_fs)
    s0 = md.state
    kT_atom = per_system(kT_eV, s0, "kT_eV")[s0.system_idx]
    gamma = per_system(friction_per_fs, s0, "friction_per_fs")
    if bool((gamma < 0).any()):
        raise ValueError(f"friction_per_fs must be ≥ 0, got {gamma.tolist()}")
    c = torch.exp(-gamma * timestep_fs)[s0.system_idx]
    sigma = torch.sqrt((1.0 - c * c) * kT_atom / (s0.masses.to(s0.dtype) * AMU_A2_PER_FS2_IN_eV))

    state = _kick(s0, md.forces_eV_per_A, 0.5 * timestep_fs)
    state = _drift(state, 0.5 * timestep_fs)
    noise = torch.randn(state.positions.shape, generator=generator, dtype=s0.dtype, device=s0.device)
    kick = sigma[:, None] * noise
    if remove_com_momentum:
        kick = _remove_com(state, kick)
    state = replace(state, velocities=c[:, None] * velocities_of(state) + kick)
    state = _drift(state, 0.5 * timestep_fs)
    forces, energy, stress_tensor = _forces(state, potential, stress)
    state = _kick(state, forces, 0.5 * timestep_fs)
    return MDState(state, forces, energy, md.step + 1, md.thermostat, stress_tensor)


# ---------------------------------------------------------------------- Nosé–Hoover chain
def _nhc_half_step(
    thermostat: NoseHooverChainState, kinetic_eV: torch.Tensor, kT: torch.Tensor, half_dt_fs: float
) -> tuple[NoseHooverChainState, torch.Tensor]:
    """Propagate the chains over ``half_dt_fs`` (Martyna–Tuckerman–Tobias–Klein 1996).

    Returns the new thermostat state and the [n_systems] factor that scales the
    particle velocities. Works on copies; the input is left unchanged.
    """
    xi = thermostat.positions.clone()
    v = thermostat.velocities_per_fs.clone()
    Q = thermostat.masses_eV_fs2
    dof = thermostat.n_dof
    M = thermostat.chain_length
    ke2 = 2.0 * kinetic_eV  # 2 KE, rescaled as velocities are scaled
    scale = torch.ones_like(kinetic_eV)

    def force(k: int) -> torch.Tensor:
        if k == 0:
            return (ke2 - dof * kT) / Q[:, 0]
        return (Q[:, k - 1] * v[:, k - 1] ** 2 - kT) / Q[:, k]

    for _ in range(thermostat.n_substeps):
        for w in SUZUKI_YOSHIDA_3:
            d = w * half_dt_fs / thermostat.n_substeps
            # chain velocities from the end of the chain to the start
            v[:, M - 1] = v[:, M - 1] + 0.5 * d * force(M - 1)
            for k in range(M - 2, -1, -1):
                f = torch.exp(-0.25 * d * v[:, k + 1])
                v[:, k] = (v[:, k] * f + 0.5 * d * force(k)) * f
            # scale the particle velocities, advance the chain positions
            s = torch.exp(-d * v[:, 0])
            scale = scale * s
            ke2 = ke2 * s * s
            xi = xi + d * v
            # chain velocities from the start to the end
            for k in range(M - 1):
                f = torch.exp(-0.25 * d * v[:, k + 1])
                v[:, k] = (v[:, k] * f + 0.5 * d * force(k)) * f
            v[:, M - 1] = v[:, M - 1] + 0.5 * d * force(M - 1)
    new = replace(thermostat, positions=xi, velocities_per_fs=v, kT_eV=kT.clone())
    return new, scale


@torch.no_grad()
def nose_hoover_chain_step(
    md: MDState,
    potential: Potential,
    *,
    timestep_fs: float,
    kT_eV: float | torch.Tensor,
    tau_fs: float,
    stress: bool = False,
) -> MDState:
    """One NVT step with a Nosé–Hoover chain per system: NHC(dt/2) · velocity Verlet(dt) · NHC(dt/2).

    If ``md.thermostat`` is None a chain of length 3 is attached (masses from ``kT_eV``
    and ``tau_fs``, n_dof = 3N − 3); an existing thermostat keeps its masses, and
    ``kT_eV`` sets the target of this step. The extended energy
    :func:`conserved_energy_eV` is conserved up to O(dt²) errors.

    Args:
        md: current state.
        potential: the potential.
        timestep_fs: dt in fs.
        kT_eV: float or [n_systems] target thermal energy in eV.
        tau_fs: thermostat period τ in fs (used only when a thermostat is attached here).
        stress: also compute the stress at the new positions (``MDState.stress_eV_per_A3``).
    """
    _check_timestep(timestep_fs)
    thermostat = md.thermostat
    if thermostat is None:
        thermostat = init_nose_hoover_chain(md.state, kT_eV, tau_fs)
    kT = per_system(kT_eV, md.state, "kT_eV")

    thermostat, scale = _nhc_half_step(thermostat, kinetic_energy_eV(md.state), kT, 0.5 * timestep_fs)
    state = replace(md.state, velocities=velocities_of(md.state) * scale[md.state.system_idx][:, None])
    state = _kick(state, md.forces_eV_per_A, 0.5 * timestep_fs)
    state = _drift(state, timestep_fs)
    forces, energy, stress_tensor = _forces(state, potential, stress)
    state = _kick(state, forces, 0.5 * timestep_fs)
    thermostat, scale = _nhc_half_step(thermostat, kinetic_energy_eV(state), kT, 0.5 * timestep_fs)
    state = replace(state, velocities=velocities_of(state) * scale[state.system_idx][:, None])
    return MDState(state, forces, energy, md.step + 1, thermostat, stress_tensor)
