"""State points of a refinement: each its own structure, MD settings and targets; one potential.

The loss of a refinement over several state points is the sum of every state point's loss
(each target with its weight γ_k). Every state point has its own trajectory, its own random
stream (seeded by its own sampling seed) and its own N_eff/N; only those whose N_eff/N falls
below the threshold are sampled again. In a distributed run state point ``k`` belongs to rank
``k mod world_size`` (:func:`owner`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..sampling import SamplerSettings
from ..state import State
from .targets import Target

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
    """

    name: str
    targets: list[Target]
    sampler_settings: SamplerSettings
    start: State
    resample_equilibration_steps: int | None = None

    def __post_init__(self) -> None:
        if not self.targets:
            raise ValueError(f"state point {self.name!r}: at least one target is needed")
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError(f"state point {self.name!r}: target names must be unique, got {names}")
        if not self.name or any(c in self.name for c in " /\\"):
            raise ValueError(f"state point name {self.name!r}: no spaces or slashes")


def owner(index: int, world_size: int) -> int:
    """The rank that samples and reweights state point ``index``."""
    return index % world_size


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
