"""State points of a refinement: each its own structure, MD settings and targets; one potential.

The loss of a refinement over several state points is the sum of every state point's loss
(each target with its weight γ_k). Every state point has its own trajectory, its own random
stream (seeded by its own sampling seed) and its own N_eff/N; only those whose N_eff/N falls
below the threshold are sampled again.

Replica groups: a state point's replicas may be split into ``replica_groups`` MD chains, each a
batch of its own with its own random stream (group 0 the state point's seed, group g > 0 a seed
derived from it, :func:`group_seed`). Its trajectory is the frames of all groups, group by group.
The groups, not the ranks, fix the frames: a run gives the same trajectories on any number of ranks.

In a distributed run the MD chains of all state points — (state point, group) in order — are dealt
to the ranks in turn (:func:`chain_owner`); a state point is reweighted by the rank that samples
its group 0 (:func:`point_owner`), which receives the other groups' frames. With one group per
state point this is state point ``k`` on rank ``k mod world_size``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..observables.base import TEMPERATURE_RTOL
from ..potentials.base import Potential
from ..sampling import SampleResult, SamplerSettings, sample, sample_in_segments
from ..state import State, concatenate
from ..trajectory import Trajectory, parameter_fingerprint
from .targets import Target

#: an MD chain: (state point index, replica group index)
Chain = tuple[int, int]

#: the name of the one state point of a refinement that has one (its files keep the run directory's layout)
SINGLE = "system"


@dataclass
class StatePoint:
    """One state point.

    Attributes:
        name: identifier (a folder of the run directory when there are several; no spaces or slashes).
        targets: its experimental targets (names unique within the state point).
        sampler_settings: its MD settings (ensemble, temperature, pressure, lengths, seed).
        start: its initial configuration (replicas as several systems).
        resample_equilibration_steps: MD steps discarded after each resampling (None: the
            refiner's ``resample_equilibration_steps``).
        replica_groups: MD chains the replicas of ``start`` are split into (consecutive and as even
            as possible; at most one per replica).
        start_trajectory: frames already sampled with the starting parameters at this state point
            (e.g. a long check of the run whose final model the refinement starts from): the first
            update reweights them instead of a fresh sampling, and the MD of later samplings
            continues from their last frame (:func:`check_start_trajectory` says what must match).
    """

    name: str
    targets: list[Target]
    sampler_settings: SamplerSettings
    start: State
    resample_equilibration_steps: int | None = None
    replica_groups: int = 1
    start_trajectory: Trajectory | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.replica_groups <= self.start.n_systems:
            raise ValueError(f"state point {self.name!r}: replica_groups must be between 1 and its "
                             f"{self.start.n_systems} replicas, got {self.replica_groups}")
        if not self.targets:
            raise ValueError(f"state point {self.name!r}: at least one target is needed")
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError(f"state point {self.name!r}: target names must be unique, got {names}")
        if not self.name or any(c in self.name for c in " /\\"):
            raise ValueError(f"state point name {self.name!r}: no spaces or slashes")


def group_replicas(n_replicas: int, n_groups: int) -> list[list[int]]:
    """The replica indices of each group: consecutive, sizes differing by at most one (larger first)."""
    return [part.tolist() for part in np.array_split(np.arange(n_replicas), n_groups)]


def group_start(point: StatePoint, group: int) -> State:
    """The starting configuration of one replica group of ``point`` (``point.start`` itself for one group)."""
    return replicas_of_group(point.start, point.replica_groups, group)


def replicas_of_group(start: State, n_groups: int, group: int) -> State:
    """The replicas of ``start`` (systems) in group ``group`` of ``n_groups`` (``start`` itself for one group)."""
    if n_groups == 1:
        return start
    systems = start.split()
    return concatenate([systems[i] for i in group_replicas(start.n_systems, n_groups)[group]])


def group_seed(seed: int, group: int) -> int:
    """The seed of replica group ``group`` of a state point with sampling seed ``seed`` (``seed`` for group 0)."""
    if group == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(group)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def group_generator(seed: int, group: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The random stream of replica group ``group`` of a state point sampled with ``seed``."""
    return torch.Generator(device=device).manual_seed(group_seed(seed, group))


def sample_groups(potential: Potential, start: State, settings: SamplerSettings, n_groups: int,
                  progress: bool = True, segment_steps: int | None = None,
                  work_dir: str | Path | None = None, log=None) -> list[SampleResult]:
    """The first sampling of a state point as a refinement does it: the replicas of ``start`` as
    ``n_groups`` MD chains, one after the other, each with its own random stream
    (:func:`join_trajectories` joins their frames).

    With ``segment_steps`` and ``work_dir`` each chain runs in resumable segments
    (:func:`~exprefine.sampling.sample_in_segments`, in ``work_dir`` or ``work_dir/group_G`` for
    several groups): called again after an interruption it continues, and the frames are the same.
    """
    if segment_steps is None:
        return [sample(potential, replicas_of_group(start, n_groups, g), settings,
                       generator=group_generator(int(settings.seed), g, start.device), progress=progress)
                for g in range(n_groups)]
    if work_dir is None:
        raise ValueError("sampling in segments needs a work_dir for them")
    results = []
    for g in range(n_groups):
        folder = Path(work_dir) if n_groups == 1 else Path(work_dir) / f"group_{g}"
        run = sample_in_segments(potential, replicas_of_group(start, n_groups, g),
                                 replace(settings, seed=group_seed(int(settings.seed), g)), folder,
                                 segment_steps=segment_steps, progress=progress, log=log)
        results.append(run.as_sample_result())
    return results


def chains(points: Sequence[StatePoint]) -> list[Chain]:
    """Every MD chain of a run, (state point index, group index), in the order they are dealt to ranks."""
    return [(k, g) for k, p in enumerate(points) for g in range(p.replica_groups)]


def chain_owner(points: Sequence[StatePoint], chain: Chain, world_size: int) -> int:
    """The rank that samples MD chain ``chain`` = (state point, group)."""
    return chains(points).index(chain) % world_size


def point_owner(points: Sequence[StatePoint], index: int, world_size: int) -> int:
    """The rank that reweights state point ``index`` (the one that samples its group 0)."""
    return chain_owner(points, (index, 0), world_size)


def join_groups(point: StatePoint, parts: Sequence[Trajectory]) -> Trajectory:
    """A state point's trajectory from its groups' trajectories (in group order): frames group by group,
    replica indices those of ``point.start``."""
    if len(parts) != point.replica_groups:
        raise ValueError(f"state point {point.name!r}: {len(parts)} group trajectories for {point.replica_groups} groups")
    return join_trajectories(point.start.n_systems, parts)


def join_trajectories(n_replicas: int, parts: Sequence[Trajectory]) -> Trajectory:
    """One trajectory of ``n_replicas`` replicas from its groups' (:func:`group_replicas` with
    ``len(parts)`` groups, in group order): frames group by group, replica indices renumbered."""
    if len(parts) == 1:
        return parts[0]
    groups = group_replicas(n_replicas, len(parts))
    return Trajectory.concatenate([replace(part, replica=torch.as_tensor(replicas, dtype=torch.long)[part.replica])
                                   for part, replicas in zip(parts, groups)])


def check_names(points: list[StatePoint]) -> None:
    """One-line error for repeated state point names."""
    names = [p.name for p in points]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"state point names must be unique; repeated: {dup}")


def qualified(point: StatePoint, target_name: str, single: bool) -> str:
    """A target's name in the run's logs: ``name`` alone for one state point, else ``point.name``."""
    return target_name if single else f"{point.name}.{target_name}"


def point_dir(run_dir: Path, point: StatePoint, single: bool) -> Path:
    """Where a state point's trajectories, figures and curves go (the run directory itself for one)."""
    return run_dir if single else run_dir / point.name


def split_groups(point: StatePoint, trajectory: Trajectory) -> list[Trajectory]:
    """The groups' trajectories of a joined one (:func:`join_groups` undone, replica indices kept)."""
    if point.replica_groups == 1:
        return [trajectory]
    return [trajectory.select(torch.isin(trajectory.replica, torch.as_tensor(replicas, dtype=torch.long)))
            for replicas in group_replicas(point.start.n_systems, point.replica_groups)]


def check_start_trajectory(point: StatePoint, potential: Potential) -> None:
    """Raise a one-line ValueError unless ``point.start_trajectory`` can stand for the point's first
    sampling with ``potential``'s current parameters: sampled with exactly these parameters (their
    fingerprint), at the point's temperature and pressure (or volume), of its replicas and atoms."""
    trajectory = point.start_trajectory
    if trajectory is None:
        return
    where = f"state point {point.name!r}: start trajectory"
    fingerprint = parameter_fingerprint(potential)
    if trajectory.fingerprint != fingerprint:
        raise ValueError(f"{where} was sampled with other parameters (fingerprint {trajectory.fingerprint}, the "
                         f"starting potential's {fingerprint}); start from the parameters that sampled it "
                         "(potential.initial_checkpoint) or recompute its energies (exprefine.io.with_reference_energies)")
    settings = point.sampler_settings
    if abs(trajectory.kT_eV - settings.kT_eV) > TEMPERATURE_RTOL * settings.kT_eV:
        raise ValueError(f"{where} has kT = {trajectory.kT_eV:.6g} eV, the sampling {settings.kT_eV:.6g} eV "
                         f"({settings.temperature_K:g} K)")
    pressure = None if settings.barostat is None else settings.barostat.pressure_eV_per_A3
    held = trajectory.pressure_eV_per_A3
    if (pressure is None) != (held is None) or (
            pressure is not None and held is not None and not math.isclose(pressure, held, rel_tol=1e-6, abs_tol=1e-12)):
        raise ValueError(f"{where} was sampled at {_ensemble_text(held)}, the sampling is at {_ensemble_text(pressure)}")
    start = point.start
    replicas = sorted(set(trajectory.replica.tolist()))
    if replicas != list(range(start.n_systems)):
        raise ValueError(f"{where} holds replicas {replicas[:5]}{'...' if len(replicas) > 5 else ''}, "
                         f"the state point {start.n_systems}")
    numbers = start.atomic_numbers[start.system_idx == 0].cpu()
    if not torch.equal(trajectory.atomic_numbers.cpu(), numbers):
        raise ValueError(f"{where} has {trajectory.n_atoms} atoms of other elements or order than the "
                         f"state point's structure ({numbers.numel()} atoms)")


def _ensemble_text(pressure_eV_per_A3: float | None) -> str:
    return "constant volume" if pressure_eV_per_A3 is None else f"pressure {pressure_eV_per_A3:.6g} eV/Å³"


def last_frames(trajectory: Trajectory) -> State:
    """The last stored frame of every replica of ``trajectory``, in replica order, as one State."""
    replicas = trajectory.replica.cpu()
    time = trajectory.time_fs.cpu()
    indices = []
    for r in sorted(set(replicas.tolist())):
        own = (replicas == r).nonzero().reshape(-1)
        latest = own[time[own] == time[own].max()]
        indices.append(int(latest[-1]))
    return trajectory.as_state(indices)
