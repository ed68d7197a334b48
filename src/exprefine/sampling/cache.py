"""MD settings from physical times, and trajectories run once and reused from disk.

Studies that compare several models (closed-loop metrics, cell-size scans) run many short MD
runs; :func:`sample_or_load` keeps each one as a trajectory file with a JSON record beside it
(the settings, the potential's parameter fingerprint, the wall time), so that a study that is
interrupted continues where it stopped, and a file made with other settings or another
potential is refused by name instead of being reused silently.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..potentials.base import Potential
from ..reweighting import frame_energies
from ..state import State
from ..trajectory import Trajectory, parameter_fingerprint
from ..units import PS_IN_FS
from .barostat import BarostatSettings
from .sampler import SamplerSettings, sample
from .segments import sample_in_segments


def settings_from_times(
    *,
    temperature_K: float,
    timestep_fs: float,
    equilibration_ps: float,
    production_ps: float,
    frame_interval_fs: float,
    friction_per_ps: float = 5.0,
    seed: int = 0,
    pressure_bar: float | None = None,
    barostat_time_fs: float = 500.0,
    barostat_coupling: str = "isotropic",
) -> SamplerSettings:
    """BAOAB Langevin settings in steps from times in ps and fs (NPT when ``pressure_bar`` is given).

    The production length is rounded up to whole frame intervals.
    """
    stride = max(1, int(round(frame_interval_fs / timestep_fs)))
    n_production = int(math.ceil(production_ps * PS_IN_FS / timestep_fs / stride - 1e-9)) * stride
    barostat = None
    if pressure_bar is not None:
        barostat = BarostatSettings(pressure_bar=pressure_bar, time_fs=barostat_time_fs, coupling=barostat_coupling)
    return SamplerSettings(
        integrator="baoab", temperature_K=temperature_K, timestep_fs=timestep_fs, friction_per_ps=friction_per_ps,
        n_equilibration_steps=int(round(equilibration_ps * PS_IN_FS / timestep_fs)), n_production_steps=n_production,
        stride_steps=stride, seed=seed, barostat=barostat,
    )


@dataclass
class CachedRun:
    """A trajectory and how it was made.

    Attributes:
        trajectory: the stored frames.
        wall_time_s: seconds the MD took when it ran.
        steps_per_s: its speed.
        reused: True when it was read from disk.
    """

    trajectory: Trajectory
    wall_time_s: float
    steps_per_s: float
    reused: bool


def sample_or_load(
    potential: Potential,
    state: State,
    settings: SamplerSettings,
    path: str | Path,
    progress: bool = False,
    segment_steps: int | None = None,
    log=None,
) -> CachedRun:
    """The trajectory at ``path`` if it was made with these settings and this potential, else a new run saved there.

    A file made with other settings or parameters raises a ValueError that names the file and
    the difference (delete the file, or choose another path, to run again). With
    ``segment_steps`` a new run goes in resumable segments (:func:`~.segments.sample_in_segments`)
    kept in ``<path stem>_segments/`` beside ``path``: a run that was stopped continues there when
    this is called again; ``log`` gets a line per segment.
    """
    path = Path(path)
    record_path = path.with_suffix(".json")
    wanted = {"settings": _plain(settings), "potential_fingerprint": parameter_fingerprint(potential),
              "n_atoms": state.n_atoms}
    if path.exists() and record_path.exists():
        record = json.loads(record_path.read_text())
        for key, value in wanted.items():
            if record.get(key) != value:
                hint = ("; if only the parameters' layout changed, adopt_cached_run checks and keeps it"
                        if key == "potential_fingerprint" else "")
                raise ValueError(f"{path}: made with another {key.replace('_', ' ')} ({record.get(key)!r}, now "
                                 f"{value!r}); delete it or choose another path{hint}")
        return CachedRun(Trajectory.load(path), float(record["wall_time_s"]), float(record["steps_per_s"]), True)
    if segment_steps is None:
        result = sample(potential, state, settings, progress=progress)
        trajectory, wall_time_s, n_steps = result.trajectory, result.wall_time_s, result.n_steps
    else:
        run = sample_in_segments(potential, state, settings, segment_directory(path), segment_steps=segment_steps,
                                 progress=progress, log=log)
        assert run.trajectory is not None  # every segment has run
        trajectory, wall_time_s, n_steps = run.trajectory, run.wall_time_s, run.n_steps
    path.parent.mkdir(parents=True, exist_ok=True)
    trajectory.save(path)
    speed = n_steps / max(wall_time_s, 1e-9)
    record_path.write_text(json.dumps({**wanted, "wall_time_s": wall_time_s, "steps_per_s": speed}, indent=1))
    return CachedRun(trajectory, wall_time_s, speed, False)


def segment_directory(path: str | Path) -> Path:
    """Where :func:`sample_or_load` keeps the segments of the run cached at ``path``."""
    path = Path(path)
    return path.with_name(path.stem + "_segments")


def adopt_cached_run(potential: Potential, path: str | Path, atol_eV: float = 1e-9) -> str:
    """Re-record a cached run under ``potential``'s fingerprint if it reproduces the run's energies.

    A potential whose state dict gained entries that do not change its physics (a new parameter at
    its neutral value) has a new fingerprint, and :func:`sample_or_load` refuses its runs. This
    evaluates ``potential`` on every frame of the run at ``path``; when each energy equals the stored
    one within ``atol_eV`` (eV per system), the record takes the new fingerprint and keeps the old
    ones under ``previous_fingerprints``. Returns the new fingerprint; raises ValueError naming the
    file, the frame and the difference otherwise.
    """
    path = Path(path)
    record_path = path.with_suffix(".json")
    record = json.loads(record_path.read_text())
    trajectory = Trajectory.load(path)
    fingerprint = parameter_fingerprint(potential)
    if record.get("potential_fingerprint") == fingerprint:
        return fingerprint
    energies = frame_energies(potential, trajectory)
    stored = trajectory.energies_eV.to(torch.float64)
    off = torch.nonzero((energies - stored).abs() > atol_eV).reshape(-1)
    if off.numel():
        k = int(off[0])
        raise ValueError(f"{path}: frame {k} has energy {float(energies[k]):.9f} eV with this potential, "
                         f"{float(stored[k]):.9f} eV stored; not the same potential, so the run is not adopted")
    record["previous_fingerprints"] = [*record.get("previous_fingerprints", []), record["potential_fingerprint"]]
    record["potential_fingerprint"] = fingerprint
    record_path.write_text(json.dumps(record, indent=1))
    return fingerprint


def _plain(settings: SamplerSettings) -> dict:
    return json.loads(json.dumps(asdict(settings)))
