"""Run equilibration and production MD for a batch of replicas and store a reweighting Trajectory.

All systems of the batch are replicas of one system (same atoms in the same order);
they advance together, and every ``stride_steps``-th production step stores one
frame per replica. Blow-ups (non-finite numbers, runaway temperature, overlapping
atoms) stop the run with :class:`SimulationBlowUp` instead of producing NaNs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from ..neighbors import build_pairs
from ..potentials.base import Potential
from ..state import State
from ..trajectory import Trajectory, parameter_fingerprint
from ..units import PS_IN_FS, BOLTZMANN_eV_per_K
from .barostat import BarostatSettings, c_rescale_step
from .integrators import (
    MDState,
    baoab_step,
    initialize,
    nose_hoover_chain_step,
    temperature_K,
    velocity_verlet_step,
)

INTEGRATORS = ("baoab", "nose_hoover_chain", "velocity_verlet")


class SimulationBlowUp(RuntimeError):
    """The simulation became unphysical (non-finite values, runaway temperature or overlapping atoms)."""


@dataclass(kw_only=True)
class SamplerSettings:
    """How to sample.

    Attributes:
        integrator: "baoab" (Langevin), "nose_hoover_chain" or "velocity_verlet" (NVE).
        temperature_K: target temperature in K (initial velocities; thermostat target).
        timestep_fs: integration time step in fs.
        friction_per_ps: Langevin friction γ in 1/ps (BAOAB only).
        thermostat_time_fs: Nosé–Hoover chain period τ in fs.
        n_equilibration_steps: steps run before any frame is stored.
        n_production_steps: steps of production.
        stride_steps: a frame of every replica is stored every ``stride_steps`` production steps.
        seed: seed of the random stream when no generator is passed to :func:`sample`.
        max_temperature_factor: blow-up if any replica's temperature exceeds factor × target.
        check_every_steps: interval of the temperature and overlap checks.
        min_distance_A: blow-up if two atoms come closer than this (0 disables the check).
        barostat: stochastic cell rescaling for the isothermal–isobaric ensemble (with the
            ``baoab`` or ``nose_hoover_chain`` thermostat), or None for constant volume.
    """

    integrator: str = "baoab"
    temperature_K: float
    timestep_fs: float
    friction_per_ps: float = 1.0
    thermostat_time_fs: float = 100.0
    n_equilibration_steps: int
    n_production_steps: int
    stride_steps: int
    seed: int = 0
    max_temperature_factor: float = 3.0
    check_every_steps: int = 10
    min_distance_A: float = 0.5
    barostat: BarostatSettings | None = None

    def __post_init__(self) -> None:
        if self.barostat is not None and self.integrator == "velocity_verlet":
            raise ValueError("constant pressure needs a thermostat: use integrator baoab or nose_hoover_chain")
        if self.integrator not in INTEGRATORS:
            raise ValueError(f"unknown integrator {self.integrator!r}; choose one of {', '.join(INTEGRATORS)}")
        _positive("temperature_K", self.temperature_K)
        _positive("timestep_fs", self.timestep_fs)
        _positive("thermostat_time_fs", self.thermostat_time_fs)
        if not (self.friction_per_ps >= 0 and math.isfinite(self.friction_per_ps)):
            raise ValueError(f"friction_per_ps must be ≥ 0 and finite, got {self.friction_per_ps}")
        if self.n_equilibration_steps < 0:
            raise ValueError(f"n_equilibration_steps must be ≥ 0, got {self.n_equilibration_steps}")
        if self.stride_steps < 1:
            raise ValueError(f"stride_steps must be ≥ 1, got {self.stride_steps}")
        if self.n_production_steps < self.stride_steps:
            raise ValueError(
                f"n_production_steps ({self.n_production_steps}) must be ≥ stride_steps "
                f"({self.stride_steps}), otherwise no frame is stored"
            )
        if not self.max_temperature_factor > 1:
            raise ValueError(f"max_temperature_factor must be > 1, got {self.max_temperature_factor}")
        if self.check_every_steps < 1:
            raise ValueError(f"check_every_steps must be ≥ 1, got {self.check_every_steps}")
        if not self.min_distance_A >= 0:
            raise ValueError(f"min_distance_A must be ≥ 0 (0 disables the check), got {self.min_distance_A}")

    @property
    def kT_eV(self) -> float:
        """Target thermal energy k_B T in eV."""
        return BOLTZMANN_eV_per_K * self.temperature_K

    @property
    def n_frames_per_replica(self) -> int:
        return self.n_production_steps // self.stride_steps


def _positive(name: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be positive and finite, got {value}")


@dataclass
class SampleResult:
    """Output of :func:`sample`.

    Attributes:
        trajectory: stored production frames of all replicas (time-major).
        final: the MD state after the last step (pass it back to :func:`sample` to continue).
        wall_time_s: wall-clock time of the run in s.
        n_steps: integration steps taken (equilibration + production).
    """

    trajectory: Trajectory
    final: MDState
    wall_time_s: float
    n_steps: int


# ---------------------------------------------------------------------- checks
def check_replicas(state: State) -> int:
    """Number of atoms per replica; ValueError unless all systems have the same atoms in the same order."""
    counts = state.n_atoms_per_system
    if bool((counts != counts[0]).any()):
        raise ValueError(f"replicas must have the same number of atoms, got {counts.tolist()}")
    n = int(counts[0])
    z = state.atomic_numbers.reshape(state.n_systems, n)
    bad = (z != z[0]).any(dim=1).nonzero().flatten()
    if bad.numel():
        raise ValueError(
            f"replicas must have the same atomic numbers in the same order; system {int(bad[0])} differs from system 0"
        )
    if bool((state.pbc != state.pbc[0]).any()):
        raise ValueError("replicas must have the same periodicity")
    return n


def check_blow_up(
    md: MDState,
    *,
    target_temperature_K: float | None = None,
    max_temperature_factor: float = 3.0,
    min_distance_A: float = 0.0,
) -> None:
    """Raise :class:`SimulationBlowUp` if ``md`` holds non-finite values, a runaway temperature or overlaps.

    The temperature check needs ``target_temperature_K``; the overlap check runs when
    ``min_distance_A`` > 0 (a neighbour list with that cutoff).
    """
    step = md.step
    checked = [(name, tensor) for name, tensor in (
        ("positions", md.state.positions),
        ("velocities", md.state.velocities),
        ("energy", md.energy_eV),
        ("forces", md.forces_eV_per_A),
    ) if tensor is not None]
    # one reduction and one device-to-host read per step (on a GPU each bool() waits for the device)
    finite = torch.stack([torch.isfinite(tensor).all() for _, tensor in checked])
    if not bool(finite.all()):
        name = checked[int(torch.argmin(finite.to(torch.int8)))][0]
        raise SimulationBlowUp(f"non-finite {name} at step {step} (NaN or inf); reduce the timestep")
    if target_temperature_K is not None:
        temps = temperature_K(md.state)
        limit = max_temperature_factor * target_temperature_K
        hot = int(torch.argmax(temps))
        if float(temps[hot]) > limit:
            raise SimulationBlowUp(
                f"temperature {float(temps[hot]):.4g} K of system {hot} far above target "
                f"{target_temperature_K:.4g} K at step {step}; reduce the timestep or check the potential"
            )
    if min_distance_A > 0:
        pairs = build_pairs(md.state, min_distance_A)
        if pairs.n_pairs:
            r = pairs.vectors(md.state.positions, md.state.cell).norm(dim=-1)
            k = int(torch.argmin(r))
            if float(r[k]) < min_distance_A:
                start = torch.cumsum(md.state.n_atoms_per_system, 0) - md.state.n_atoms_per_system
                s = int(pairs.system[k])
                i, j = int(pairs.i[k] - start[s]), int(pairs.j[k] - start[s])
                raise SimulationBlowUp(
                    f"atoms {i},{j} of system {s} closer than {min_distance_A} Å "
                    f"({float(r[k]):.3f} Å) at step {step}; reduce the timestep or check the potential"
                )


# ---------------------------------------------------------------------- sampling
def advance(md: MDState, potential: Potential, settings: SamplerSettings, generator: torch.Generator,
            stress: bool = False) -> MDState:
    """One step of the integrator named in ``settings``; with ``stress`` its force evaluation gives the stress too."""
    if settings.integrator == "baoab":
        return baoab_step(
            md,
            potential,
            timestep_fs=settings.timestep_fs,
            kT_eV=settings.kT_eV,
            friction_per_fs=settings.friction_per_ps / PS_IN_FS,
            generator=generator,
            stress=stress,
        )
    if settings.integrator == "nose_hoover_chain":
        return nose_hoover_chain_step(
            md, potential, timestep_fs=settings.timestep_fs, kT_eV=settings.kT_eV, tau_fs=settings.thermostat_time_fs,
            stress=stress,
        )
    return velocity_verlet_step(md, potential, timestep_fs=settings.timestep_fs, stress=stress)


def _advance_with_barostat(md: MDState, potential: Potential, settings: SamplerSettings,
                           generator: torch.Generator) -> MDState:
    """One integrator step, then a cell update every ``barostat.interval_steps`` steps (the step before it
    computes the stress with its forces: one potential evaluation per update saved)."""
    baro = settings.barostat
    update = baro is not None and (md.step + 1) % baro.interval_steps == 0
    md = advance(md, potential, settings, generator, stress=update)
    if baro is not None and update:
        md = c_rescale_step(md, potential, kT_eV=settings.kT_eV, settings=baro,
                            dt_fs=baro.interval_steps * settings.timestep_fs, generator=generator)
    return md


@torch.no_grad()
def sample(
    potential: Potential,
    start: MDState | State,
    settings: SamplerSettings,
    *,
    generator: torch.Generator | None = None,
    fingerprint: str | None = None,
    progress: bool = False,
) -> SampleResult:
    """Equilibrate, then run production and store every ``stride_steps``-th step of every replica.

    Args:
        potential: the potential θ_ref that drives the dynamics.
        start: an MDState (continued as it is) or a State (velocities drawn at the target
            temperature if it has none). All systems must be replicas of one system.
        settings: integrator, temperature, step counts, checks.
        generator: random stream (velocities, Langevin noise); if None one is seeded
            with ``settings.seed``. Passing the generator of an earlier run continues its stream.
        fingerprint: provenance of θ_ref; default :func:`parameter_fingerprint` of ``potential``.
        progress: show a tqdm progress bar with steps/s and the mean temperature.

    Returns:
        A SampleResult whose trajectory holds n_saved × n_replicas frames in time-major
        order (frame k·n_replicas + r is replica r at the k-th stored step), with
        ``time_fs`` = step count × timestep and float64 potential energies.

    Raises:
        SimulationBlowUp: non-finite values, temperature above max_temperature_factor × target,
            or atoms closer than min_distance_A.
        ValueError: the systems of the batch are not replicas of one system.
    """
    state = start.state if isinstance(start, MDState) else start
    n_atoms = check_replicas(state)
    if generator is None:
        generator = torch.Generator(device=state.device).manual_seed(settings.seed)
    if fingerprint is None:
        fingerprint = parameter_fingerprint(potential)

    t0 = time.perf_counter()
    md = start if isinstance(start, MDState) else initialize(start, potential, settings.temperature_K, generator)
    check_blow_up(md, min_distance_A=settings.min_distance_A)
    n_total = settings.n_equilibration_steps + settings.n_production_steps

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_total, unit="step", desc=f"MD {settings.integrator}", dynamic_ncols=True)

    positions, cells, energies, times = [], [], [], []
    try:
        for k in range(1, n_total + 1):
            md = _advance_with_barostat(md, potential, settings, generator)
            check = k % settings.check_every_steps == 0 or k == n_total
            check_blow_up(
                md,
                target_temperature_K=settings.temperature_K if check else None,
                max_temperature_factor=settings.max_temperature_factor,
                min_distance_A=settings.min_distance_A if check else 0.0,
            )
            production_step = k - settings.n_equilibration_steps
            if production_step > 0 and production_step % settings.stride_steps == 0:
                positions.append(md.state.positions.reshape(state.n_systems, n_atoms, 3).clone())
                cells.append(md.state.cell.clone())
                energies.append(md.energy_eV.to(torch.float64).clone())
                times.append(md.step * settings.timestep_fs)
            if bar is not None:
                bar.update(1)
                if check:
                    bar.set_postfix(T_K=f"{float(temperature_K(md.state).mean()):.1f}", refresh=False)
    finally:
        if bar is not None:
            bar.close()

    n_saved = len(positions)
    n_rep = state.n_systems
    trajectory = Trajectory(
        positions_A=torch.cat(positions).reshape(n_saved * n_rep, n_atoms, 3),
        cells_A=torch.cat(cells),
        pbc=state.pbc[0].clone(),
        atomic_numbers=state.atomic_numbers[:n_atoms].clone(),
        masses_amu=state.masses[:n_atoms].clone(),
        energies_eV=torch.cat(energies),
        kT_eV=settings.kT_eV,
        fingerprint=fingerprint,
        pressure_eV_per_A3=None if settings.barostat is None else settings.barostat.pressure_eV_per_A3,
        time_fs=torch.tensor(times, dtype=torch.float64).repeat_interleave(n_rep),
        replica=torch.arange(n_rep).repeat(n_saved),
    )
    return SampleResult(
        trajectory=trajectory, final=md, wall_time_s=time.perf_counter() - t0, n_steps=n_total
    )
