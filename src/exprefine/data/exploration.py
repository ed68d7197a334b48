"""Frames for a training set from MD with a (preliminary) potential, with a blow-up guard.

:func:`md_frames` runs Langevin NVT (BAOAB, :func:`exprefine.sampling.sample`) of one
structure at one temperature and keeps every ``stride_steps``-th configuration after
``n_equilibration_steps``: uniform subsampling in time, no selection by the model's
uncertainty. A preliminary model can drive the dynamics into nonsense (atoms collapsing,
temperature running away); the run is advanced one stored frame at a time and an attempt
stops at the first sign of that:

* the sampler's own checks (non-finite numbers, temperature above
  ``max_temperature_factor`` × target, two atoms closer than ``min_distance_A``), checked at
  every stored frame;
* a force on any atom above ``max_force_eV_per_A`` at a stored frame;
* optionally, an atom without any neighbour within ``max_nearest_neighbour_A`` at a stored
  frame (a broken-off atom: for a covalent network such as g-C3N4 a sign that the model has
  lost its bonds, which a too-soft model does without tripping the other checks).

The frames stored before the stop are kept (the offending one is not), and a new attempt
starts from the input structure with fresh velocities and noise, until ``n_frames`` frames
are stored or ``max_restarts`` restarts are used up.

Units: K, fs, 1/ps, Å, eV.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from ase import Atoms

from ..neighbors import build_pairs
from ..potentials.base import Potential
from ..sampling import SamplerSettings, SimulationBlowUp, sample
from ..sampling.integrators import MDState, temperature_K
from ..state import from_atoms


@dataclass(kw_only=True)
class ExplorationSettings:
    """How :func:`md_frames` samples one structure at one temperature.

    Attributes:
        temperature_K: thermostat target, K.
        n_frames: frames to store.
        stride_steps: MD steps between stored frames.
        n_equilibration_steps: steps before the first stored frame (every attempt).
        timestep_fs: integration step, fs.
        friction_per_ps: Langevin friction γ, 1/ps.
        seed: seed of velocities and noise (attempt a uses the stream seeded by (seed, a)).
        min_distance_A: an attempt stops if two atoms come closer, Å.
        max_force_eV_per_A: an attempt stops if a stored frame has a larger force on an atom, eV/Å.
        max_temperature_factor: an attempt stops above this multiple of the target temperature.
        max_restarts: new attempts after stops.
        max_nearest_neighbour_A: an attempt stops if a stored frame has an atom whose nearest
            neighbour is farther than this, Å (None: no check).
    """

    temperature_K: float
    n_frames: int
    stride_steps: int = 20
    n_equilibration_steps: int = 200
    timestep_fs: float = 1.0
    friction_per_ps: float = 10.0
    seed: int = 0
    min_distance_A: float = 0.9
    max_force_eV_per_A: float = 50.0
    max_temperature_factor: float = 3.0
    max_restarts: int = 2
    max_nearest_neighbour_A: float | None = None

    def __post_init__(self) -> None:
        if self.n_frames < 1:
            raise ValueError(f"n_frames must be ≥ 1, got {self.n_frames}")
        if self.max_restarts < 0:
            raise ValueError(f"max_restarts must be ≥ 0, got {self.max_restarts}")
        if not self.max_force_eV_per_A > 0:
            raise ValueError(f"max_force_eV_per_A must be positive, got {self.max_force_eV_per_A}")

    def sampler_settings(self, n_equilibration_steps: int) -> SamplerSettings:
        """Settings of one call of the sampler that stores one frame after ``stride_steps`` steps."""
        return SamplerSettings(
            integrator="baoab",
            temperature_K=self.temperature_K,
            timestep_fs=self.timestep_fs,
            friction_per_ps=self.friction_per_ps,
            n_equilibration_steps=n_equilibration_steps,
            n_production_steps=self.stride_steps,
            stride_steps=self.stride_steps,
            max_temperature_factor=self.max_temperature_factor,
            check_every_steps=min(10, self.stride_steps),
            min_distance_A=self.min_distance_A,
        )


@dataclass
class ExplorationResult:
    """Frames of :func:`md_frames` and how the run went.

    Attributes:
        frames: stored frames (copies of the input Atoms, with its per-atom arrays and info,
            positions wrapped into the cell); info adds ``md_temperature_K``, ``md_attempt``,
            ``md_step``, ``md_time_fs``, ``md_kinetic_temperature_K``, ``md_energy_eV`` (the
            potential's energy) and ``md_max_force_eV_per_A``.
        n_steps: MD steps taken over all attempts.
        wall_s: wall time, s.
        stops: one line per stopped attempt (empty when nothing went wrong).
    """

    frames: list[Atoms]
    n_steps: int
    wall_s: float
    stops: list[str] = field(default_factory=list)

    @property
    def steps_per_s(self) -> float:
        return self.n_steps / self.wall_s if self.wall_s > 0 else math.nan


def _attempt_generator(seed: int, attempt: int) -> torch.Generator:
    state = int(np.random.SeedSequence([int(seed), int(attempt)]).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator().manual_seed(state % (2**63))


def _check_isolated_atoms(md: MDState, cutoff_A: float) -> None:
    """SimulationBlowUp if an atom has no neighbour within ``cutoff_A`` Å."""
    pairs = build_pairs(md.state, cutoff_A)
    counts = torch.zeros(md.state.n_atoms, dtype=torch.long)
    if pairs.n_pairs:
        r = pairs.vectors(md.state.positions, md.state.cell).norm(dim=-1)
        close = r < cutoff_A
        counts.index_add_(0, pairs.i[close].cpu(), torch.ones(int(close.sum()), dtype=torch.long))
        counts.index_add_(0, pairs.j[close].cpu(), torch.ones(int(close.sum()), dtype=torch.long))
    lonely = (counts == 0).nonzero().flatten()
    if lonely.numel():
        raise SimulationBlowUp(f"atom {int(lonely[0])} has no neighbour within {cutoff_A} Å at step {md.step} "
                               f"({lonely.numel()} such atoms)")


def _frame(atoms: Atoms, md: MDState, settings: ExplorationSettings, attempt: int, max_force: float) -> Atoms:
    out = atoms.copy()
    out.calc = None
    out.set_cell(md.state.cell[0].detach().cpu().numpy())
    out.set_positions(md.state.positions.detach().cpu().numpy())
    out.set_momenta(np.zeros((len(out), 3)))
    out.wrap()
    out.info.update(
        md_temperature_K=float(settings.temperature_K),
        md_attempt=int(attempt),
        md_step=int(md.step),
        md_time_fs=float(md.step * settings.timestep_fs),
        md_kinetic_temperature_K=float(temperature_K(md.state)[0]),
        md_energy_eV=float(md.energy_eV[0]),
        md_max_force_eV_per_A=float(max_force),
    )
    return out


def md_frames(
    potential: Potential,
    atoms: Atoms,
    settings: ExplorationSettings,
    progress: bool = False,
    description: str = "MD",
) -> ExplorationResult:
    """NVT frames of ``atoms`` at ``settings.temperature_K`` driven by ``potential`` (see module docstring).

    Args:
        potential: drives the dynamics (its dtype decides the precision of the forces).
        atoms: the start structure (periodic); its per-atom arrays and info are carried over.
        settings: temperature, lengths, guard thresholds.
        progress: show a progress bar over stored frames.
        description: label of the progress bar.
    """
    t0 = time.perf_counter()
    frames: list[Atoms] = []
    stops: list[str] = []
    n_steps = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=settings.n_frames, desc=description, unit="frame", dynamic_ncols=True)
    try:
        for attempt in range(settings.max_restarts + 1):
            generator = _attempt_generator(settings.seed, attempt)
            start = from_atoms(atoms)
            md: MDState | None = None
            try:
                while len(frames) < settings.n_frames:
                    n_equil = settings.n_equilibration_steps if md is None else 0
                    run = sample(potential, md if md is not None else start, settings.sampler_settings(n_equil),
                                 generator=generator, fingerprint="md_frames")
                    n_steps += run.n_steps
                    md = run.final
                    max_force = float(md.forces_eV_per_A.norm(dim=-1).max())
                    if not max_force <= settings.max_force_eV_per_A:
                        raise SimulationBlowUp(f"force {max_force:.3g} eV/Å above {settings.max_force_eV_per_A} "
                                               f"eV/Å at step {md.step}")
                    if settings.max_nearest_neighbour_A is not None:
                        _check_isolated_atoms(md, settings.max_nearest_neighbour_A)
                    frames.append(_frame(atoms, md, settings, attempt, max_force))
                    if bar is not None:
                        bar.update(1)
                break
            except SimulationBlowUp as exc:
                stops.append(f"attempt {attempt}: {exc}")
                if bar is not None:
                    bar.set_postfix(stops=len(stops), refresh=True)
    finally:
        if bar is not None:
            bar.close()
    return ExplorationResult(frames, n_steps, time.perf_counter() - t0, stops)


__all__ = ["ExplorationResult", "ExplorationSettings", "md_frames"]
