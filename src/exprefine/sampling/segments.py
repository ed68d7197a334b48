"""Long MD runs in resumable segments.

A run of many picoseconds on a shared machine can be stopped at any moment. :func:`sample_in_segments`
runs :func:`~exprefine.sampling.sampler.sample` one segment at a time and, after each one, writes
the segment's frames, the exact MD state (positions, velocities, cell, forces, thermostat and
step) and the random stream to a work directory. Called again with the same arguments it
continues after the last finished segment, and the joined frames equal those of one
uninterrupted :func:`sample` call with the same settings (the same steps, the same random
numbers in the same order; bit for bit within one process, to round-off, ≈ 1e-15 Å, after a
resume, where sums may run in another order). A work directory made with other settings, another
potential or another starting structure is refused by name.

Files in ``work_dir``: ``run.json`` (settings, fingerprints, and a readable copy of the segment
records), ``segment_NNN.pt`` (its frames, a :class:`~exprefine.trajectory.Trajectory`) and
``md_state.pt`` (the state after the newest segment and the records of all finished ones: what
a resume trusts). Each is written to a temporary name and renamed, so a run killed at any moment
resumes after its last finished segment (a segment cut short is run again).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from ..atomic import write_text_atomically
from ..io.checkpoint import atomic_save
from ..potentials.base import Potential
from ..state import State
from ..trajectory import Trajectory, parameter_fingerprint, state_fingerprint
from .integrators import MDState
from .sampler import SampleResult, SamplerSettings, sample

RUN_RECORD = "run.json"
MD_STATE = "md_state.pt"


@dataclass
class SegmentRecord:
    """One finished segment.

    Attributes:
        index: 0, 1, ... (segment 0 includes the equilibration).
        n_steps: integration steps of the segment.
        n_frames: frames it stored.
        end_time_ps: simulated time at its last step (ps, counted from the start of equilibration).
        wall_time_s: seconds it took.
    """

    index: int
    n_steps: int
    n_frames: int
    end_time_ps: float
    wall_time_s: float


@dataclass
class SegmentedRun:
    """What :func:`sample_in_segments` has produced so far.

    Attributes:
        trajectory: the frames of every finished segment, joined in time order (None if none has finished).
        final: the MD state after the newest segment (None if none has finished).
        segments: one record per finished segment.
        n_segments: segments the whole run has.
    """

    trajectory: Trajectory | None
    final: MDState | None
    segments: list[SegmentRecord]
    n_segments: int

    @property
    def complete(self) -> bool:
        return len(self.segments) == self.n_segments

    @property
    def wall_time_s(self) -> float:
        """Seconds of MD over all finished segments (of every session that ran them)."""
        return sum(s.wall_time_s for s in self.segments)

    @property
    def n_steps(self) -> int:
        return sum(s.n_steps for s in self.segments)

    def as_sample_result(self) -> SampleResult:
        """The finished run as :func:`sample` returns one (raises if it is not complete)."""
        if not self.complete or self.trajectory is None or self.final is None:
            raise ValueError(f"the segmented run has {len(self.segments)} of {self.n_segments} segments")
        return SampleResult(trajectory=self.trajectory, final=self.final, wall_time_s=self.wall_time_s,
                            n_steps=self.n_steps)


def segment_steps_of(settings: SamplerSettings, segment_ps: float) -> int:
    """Production steps per segment of about ``segment_ps`` ps, rounded to whole frame intervals (≥ 1)."""
    if not segment_ps > 0:
        raise ValueError(f"segment_ps must be positive, got {segment_ps}")
    intervals = max(1, round(1000.0 * segment_ps / settings.timestep_fs / settings.stride_steps))
    return intervals * settings.stride_steps


def segment_plan(settings: SamplerSettings, segment_steps: int) -> list[SamplerSettings]:
    """The settings of each segment: the first one equilibrates, all store frames on the same grid.

    ``segment_steps`` (production steps per segment) must be a multiple of ``stride_steps`` so that
    every segment stores the frames an uninterrupted run stores; the last segment takes the rest.
    """
    stride = settings.stride_steps
    if segment_steps < stride or segment_steps % stride:
        raise ValueError(f"segment_steps ({segment_steps}) must be a positive multiple of stride_steps ({stride})")
    if settings.n_production_steps % stride:
        raise ValueError(f"n_production_steps ({settings.n_production_steps}) must be a multiple of stride_steps "
                         f"({stride}) to run in segments")
    n_segments = math.ceil(settings.n_production_steps / segment_steps)
    plan = []
    for k in range(n_segments):
        n_production = min(segment_steps, settings.n_production_steps - k * segment_steps)
        plan.append(replace(settings, n_equilibration_steps=settings.n_equilibration_steps if k == 0 else 0,
                            n_production_steps=n_production))
    return plan


def sample_in_segments(
    potential: Potential,
    start: State | MDState,
    settings: SamplerSettings,
    work_dir: str | Path,
    *,
    segment_steps: int,
    max_new_segments: int | None = None,
    progress: bool = False,
    log=None,
    generator: torch.Generator | None = None,
) -> SegmentedRun:
    """Run ``settings`` in segments of ``segment_steps`` production steps, resuming from ``work_dir``.

    Args:
        potential: the potential that drives the dynamics.
        start: the initial state (used only when ``work_dir`` holds no finished segment).
        settings: as for :func:`sample`; the random stream is seeded with ``settings.seed``.
        work_dir: where segments, MD state and the run record go (created if missing).
        segment_steps: production steps per segment (a multiple of ``settings.stride_steps``).
        max_new_segments: stop after this many new segments (None: run to the end).
        progress: a progress bar per segment.
        log: called with one line of text after each segment (e.g. ``print``), or None.
        generator: the random stream to start from (e.g. a refinement chain's, which lives on across
            samplings); it is advanced in place, on a resume to the stream after the last finished
            segment, so that afterwards it equals the stream of one uninterrupted :func:`sample` call.
            None: a new stream seeded with ``settings.seed``. The run record keeps a fingerprint of
            the starting stream; a work directory begun from another stream is refused.

    Returns:
        A SegmentedRun with every finished segment's frames joined (``complete`` tells whether
        the whole run is done).

    Raises:
        ValueError: ``work_dir`` belongs to another run (the differing setting is named).
        SimulationBlowUp: as :func:`sample`; the finished segments stay on disk.
    """
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    plan = segment_plan(settings, segment_steps)
    first_state = start.state if isinstance(start, MDState) else start
    n_atoms = first_state.n_atoms
    wanted = {"settings": json.loads(json.dumps(asdict(settings))), "segment_steps": segment_steps,
              "potential_fingerprint": parameter_fingerprint(potential), "n_atoms": n_atoms,
              "start_fingerprint": start_fingerprint(first_state)}
    record_path = work / RUN_RECORD
    segments: list[SegmentRecord] = []
    md: State | MDState = start
    if generator is None:
        generator = torch.Generator(device=first_state.device).manual_seed(settings.seed)
    else:
        wanted["generator_fingerprint"] = generator_fingerprint(generator)
    if record_path.exists():
        record = json.loads(record_path.read_text())
        for key, value in wanted.items():
            if key == "start_fingerprint" and key not in record:
                continue  # written before starts were recorded
            if record.get(key) != value:
                raise ValueError(f"{record_path}: made with another {key.replace('_', ' ')} "
                                 f"({record.get(key)!r}, now {value!r}); delete {work} or choose another work_dir")
        if (work / MD_STATE).exists():
            # the MD state file is the authority on what finished (it is written in one atomic step)
            saved = torch.load(work / MD_STATE, weights_only=False)
            segments = [SegmentRecord(**s) for s in saved.get("segments", record["segments"])]
            if not segments or saved["segment"] != segments[-1].index:
                raise ValueError(f"{work / MD_STATE} belongs to segment {saved['segment']}, its record ends at "
                                 f"{segments[-1].index if segments else 'none'}")
            md = saved["md"]
            generator.set_state(saved["generator"])
        elif record["segments"]:
            raise ValueError(f"{record_path} lists {len(record['segments'])} finished segment(s) but "
                             f"{work / MD_STATE} is missing; delete {work} to start again")
    else:
        write_text_atomically(record_path, json.dumps({**wanted, "segments": []}, indent=1))
    if segments and log is not None and len(segments) < len(plan):
        log(f"resuming after segment {len(segments)}/{len(plan)} (t = {segments[-1].end_time_ps:.2f} ps)")
    stop = len(plan) if max_new_segments is None else min(len(plan), len(segments) + max_new_segments)
    for k in range(len(segments), stop):
        result = sample(potential, md, plan[k], generator=generator, progress=progress)
        md = result.final
        result.trajectory.save(work / f"segment_{k:03d}.pt")
        segments.append(SegmentRecord(index=k, n_steps=result.n_steps, n_frames=result.trajectory.n_frames,
                                      end_time_ps=float(md.step) * settings.timestep_fs / 1000.0,
                                      wall_time_s=result.wall_time_s))
        plain = [asdict(s) for s in segments]
        atomic_save({"segment": k, "md": md, "generator": generator.get_state(), "segments": plain}, work / MD_STATE)
        write_text_atomically(record_path, json.dumps({**wanted, "segments": plain}, indent=1))  # a readable copy
        if log is not None:
            log(f"segment {k + 1}/{len(plan)}: t = {segments[-1].end_time_ps:.2f} ps, {result.n_steps} steps in "
                f"{result.wall_time_s:.0f} s ({result.n_steps / max(result.wall_time_s, 1e-9):.2f} steps/s)")
    return joined(work, segments, len(plan))


def start_fingerprint(state: State) -> str:
    """A short hash of a starting structure (positions, cell, elements)."""
    return state_fingerprint({"positions_A": state.positions, "cell_A": state.cell,
                              "atomic_numbers": state.atomic_numbers})


def generator_fingerprint(generator: torch.Generator) -> str:
    """A short hash of a random stream's state (equal states, equal hashes)."""
    return hashlib.sha256(generator.get_state().cpu().numpy().tobytes()).hexdigest()[:16]


def run_key(potential: Potential, start: State | MDState, generator: torch.Generator) -> str:
    """A short name for a segmented run of ``potential`` from ``start`` with ``generator``'s stream: the same
    three give the same key (a resumed run finds its work directory), any other gives another."""
    parts = (parameter_fingerprint(potential), start_fingerprint(start.state if isinstance(start, MDState) else start),
             generator_fingerprint(generator))
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:12]


def joined(work_dir: str | Path, segments: list[SegmentRecord], n_segments: int) -> SegmentedRun:
    """The finished segments of ``work_dir`` as one run."""
    work = Path(work_dir)
    if not segments:
        return SegmentedRun(None, None, [], n_segments)
    parts = [Trajectory.load(work / f"segment_{s.index:03d}.pt") for s in segments]
    final = torch.load(work / MD_STATE, weights_only=False)["md"]
    return SegmentedRun(Trajectory.concatenate(parts), final, segments, n_segments)

