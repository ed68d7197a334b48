"""The jobs behind the CLI subcommands, as Python functions: refine, sample, evaluate."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .builders import (
    build_dft_split,
    build_potential,
    build_refiner,
    build_system_state,
    build_target,
    check_point_metadata,
    config_device,
    load_potential_state,
    sampler_settings,
    save_native_models,
    train_settings,
)
from .config import SINGLE_STATE_POINT, Config, StatePointSpec, config_relative_to, save_resolved
from .data import evaluate_dft_errors
from .io import read_frames, read_lammps_dump
from .io.checkpoint import save_checkpoint
from .potentials.base import Potential
from .provenance import RUN_INFO_FILE, append_run_info
from .refine import Evaluation, RefinementResult, Target, evaluate_targets
from .refine.collective import Collective, rank_device, start_collective
from .refine.curves import target_curves, write_curves
from .refine.plots import plot_curves
from .refine.state_points import join_trajectories, sample_groups
from .reweighting import effective_sample_size, frame_energies, log_weights
from .sampling import SampleResult, segment_steps_of
from .state import State
from .training import TrainResult, train
from .trajectory import Trajectory
from .units import kT_eV

if TYPE_CHECKING:  # pragma: no cover
    from .data import DFTErrors


class RunDirectoryInUse(RuntimeError):
    """The run directory already holds a refinement that would be overwritten."""


def _threads(cfg: Config) -> None:
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)


def run_refinement(cfg: Config, resume: bool = False, overwrite: bool = False, progress: bool = True,
                   progress_lines: bool = False, collective: Collective | None = None) -> RefinementResult:
    """Refine the configured potential against the configured targets; write everything to ``cfg.run_dir``.

    A run directory that already holds a checkpoint is continued with ``resume`` and
    is never overwritten silently (``overwrite`` starts afresh). ``progress``: progress bars;
    ``progress_lines``: one plain line per update on stderr instead (for logs and pipes).
    Launched by torchrun with several ranks (or given a ``collective``), the state points are
    spread over the ranks and rank 0 alone writes; the process group is started and ended here.
    """
    _threads(cfg)
    own = collective is None
    if collective is None:
        collective = start_collective(rank_device(config_device(cfg)))
    try:
        return _refine(cfg, resume, overwrite, progress, progress_lines, collective)
    finally:
        if own:
            collective.close()


def _refine(cfg: Config, resume: bool, overwrite: bool, progress: bool, progress_lines: bool,
            collective: Collective) -> RefinementResult:
    run_dir = Path(cfg.run_dir)
    latest = run_dir / "checkpoints" / "latest.pt"
    if latest.exists() and not (resume or overwrite):
        raise RunDirectoryInUse(
            f"{run_dir} already holds a refinement (checkpoints/latest.pt): continue it with --resume, "
            f"or start afresh with --overwrite"
        )
    if resume and not latest.exists():
        raise FileNotFoundError(f"nothing to resume: {latest} does not exist")
    writer = collective.is_writer
    refiner = build_refiner(cfg, progress=progress and writer, progress_lines=progress_lines, collective=collective)
    collective.barrier()  # every rank has seen the run directory as it was
    if writer:
        if not resume:
            _remove_refinement_outputs(run_dir, [p.name for p in refiner.points] if not refiner.single else [])
        save_resolved(cfg, run_dir / "config.yaml")
        append_run_info(run_dir)
    collective.barrier()
    result = refiner.run(resume=resume)
    if writer:
        save_native_models(cfg, refiner.potential)
    return result


def _remove_refinement_outputs(run_dir: Path, point_names: list[str] | None = None) -> None:
    """Delete what an earlier refinement wrote (checkpoints, trajectories, model, logs, plots), nothing else
    (``point_names``: the state points' folders of a run with several)."""
    for sub in ("checkpoints", "trajectories"):
        for path in (run_dir / sub).glob("*.pt"):
            path.unlink()
    for pattern in ("final_model.pt", "summary.json", "history.png", "target_*.png", "log.csv", "log.jsonl",
                    "curves.json", RUN_INFO_FILE):
        for path in run_dir.glob(pattern):
            path.unlink()
    for name in point_names or []:
        for pattern in ("trajectories/*.pt", "summary.json", "target_*.png", "curves.json"):
            for path in (run_dir / name).glob(pattern):
                path.unlink()


@dataclass
class TrainingReport:
    """``exprefine train``: the fit and the errors on the held-out test frames."""

    result: "TrainResult"
    test_errors: "DFTErrors | None"
    run_dir: Path
    written: list[Path]


def run_training(cfg: Config, resume: bool = False, overwrite: bool = False, progress: bool = True) -> TrainingReport:
    """Fit the configured potential to the labelled frames of ``cfg.dft`` (no experimental term).

    Writes ``run_dir/final_model.pt`` (the refiner's format: ``potential.initial_checkpoint``
    of a later refinement can point at it), native model files (MACE ``.model``),
    ``dft_errors_test.json`` and the trainer's log, curves and checkpoints.
    """
    _threads(cfg)
    run_dir = Path(cfg.run_dir)
    latest = run_dir / "checkpoints" / "train_latest.pt"
    if latest.exists() and not (resume or overwrite):
        raise RunDirectoryInUse(f"{run_dir} already holds a training run (checkpoints/train_latest.pt): "
                                f"continue it with --resume, or start afresh with --overwrite")
    if resume and not latest.exists():
        raise FileNotFoundError(f"nothing to resume: {latest} does not exist")
    settings = train_settings(cfg)
    potential = build_potential(cfg)
    if overwrite:
        latest.unlink(missing_ok=True)
        (run_dir / "dft_split.json").unlink(missing_ok=True)
    parts = build_dft_split(cfg)
    save_resolved(cfg, run_dir / "config.yaml")
    result = train(potential, parts.train, parts.valid, settings,
                   run_dir=run_dir, progress=progress, resume=resume)
    save_checkpoint(run_dir / "final_model.pt", {"potential_state": potential.state_dict(),
                                                 "config": config_relative_to(cfg, run_dir)})
    written = save_native_models(cfg, potential)
    test = (evaluate_dft_errors(potential, parts.test, batch_size=settings.eval_batch_size)
            if parts.test is not None else None)
    if test is not None:
        (run_dir / "dft_errors_test.json").write_text(json.dumps(asdict(test), indent=2))
    return TrainingReport(result=result, test_errors=test, run_dir=run_dir, written=written)


@dataclass
class SamplingReport:
    """One state point's sampling run and, if it has targets, their comparison with the data.

    Attributes:
        trajectory: the frames of all its replicas (its replica groups joined, group by group).
        results: each replica group's MD run (one unless ``system.replica_groups`` splits them).
        evaluation: the targets on ``trajectory`` (None without targets).
        out_dir: where ``trajectory.pt`` and the comparison were written.
        state_point: its name.
    """

    trajectory: Trajectory
    results: list[SampleResult]
    evaluation: Evaluation | None
    out_dir: Path
    state_point: str = SINGLE_STATE_POINT

    @property
    def wall_time_s(self) -> float:
        """Wall time of all its MD runs in s."""
        return sum(r.wall_time_s for r in self.results)


@dataclass
class _PointJob:
    """What one state point's sampling needs, built (data files read) before any MD starts."""

    spec: StatePointSpec
    state: State
    targets: list[Target]
    out_dir: Path


def _point_out_dir(cfg: Config, spec: StatePointSpec, folder: Path) -> Path:
    """``folder`` for a config with one state point, else ``folder/NAME`` for each."""
    return folder if cfg.systems is None else folder / spec.name


def _point_jobs(cfg: Config, folder: Path) -> list[_PointJob]:
    """Every state point's structure and targets; the data files of all of them are read and checked
    before the first MD (a bad file fails in seconds, not after the simulations)."""
    jobs = []
    for spec in cfg.state_points():
        state = build_system_state(spec.system)
        check_point_metadata(spec, state)
        targets = [build_target(t, spec.sampling.temperature_K) for t in spec.targets]
        jobs.append(_PointJob(spec, state, targets, _point_out_dir(cfg, spec, folder)))
    return jobs


def _sample_and_compare(cfg: Config, potential, folder: Path, progress: bool,
                        segment_ps: float | None = None) -> list[SamplingReport]:
    """MD with ``potential`` at every state point (its own structure and sampling settings, the shared
    section with its overrides), then each of its targets against its trajectory; with ``segment_ps``
    the MD goes in resumable segments of about that many ps (kept in each output folder's ``segments/``)."""
    return [_sample_point(cfg, potential, job, progress, segment_ps) for job in _point_jobs(cfg, folder)]


def _sample_point(cfg: Config, potential, job: _PointJob, progress: bool,
                  segment_ps: float | None = None) -> SamplingReport:
    out_dir = job.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    save_resolved(cfg, out_dir / "config.yaml")
    append_run_info(out_dir)
    # the replica groups as a refinement samples them, so that these frames are its first trajectory
    settings = sampler_settings(job.spec.sampling)
    segment_steps = None if segment_ps is None else segment_steps_of(settings, segment_ps)
    results = sample_groups(potential, job.state, settings, job.spec.system.replica_groups, progress=progress,
                            segment_steps=segment_steps, work_dir=out_dir / "segments",
                            log=None if progress else _stderr_line)
    trajectory = join_trajectories(job.state.n_systems, [r.trajectory for r in results])
    trajectory.save(out_dir / "trajectory.pt")
    report = SamplingReport(trajectory, results, None, out_dir, job.spec.name)
    if job.targets:
        report.evaluation = evaluation = evaluate_targets(job.targets, trajectory, potential)
        _write_comparison(job.targets, evaluation, out_dir)
        (out_dir / "evaluation.json").write_text(json.dumps({
            "state_point": job.spec.name, "temperature_K": job.spec.sampling.temperature_K,
            "rmse": evaluation.rmse, "loss": evaluation.loss, "n_frames": evaluation.n_frames,
            "scalar_targets": evaluation.scalars(),
            "fingerprint": evaluation.fingerprint, "wall_time_s": report.wall_time_s,
        }, indent=2))
    return report


def _write_comparison(targets, evaluation: Evaluation, out_dir: Path) -> None:
    """``curves.json`` and one figure per target of a single evaluation (labelled "model")."""
    curves = target_curves(targets, [("model", evaluation)])
    write_curves(curves, out_dir / "curves.json")
    plot_curves(curves, out_dir)


def run_sampling(cfg: Config, progress: bool = True, segment_ps: float | None = None) -> list[SamplingReport]:
    """MD with the configured potential at every state point; trajectory and target comparison in
    ``run_dir/sample`` (one state point) or ``run_dir/sample/NAME`` (``systems:``), in config order.
    With ``segment_ps`` the MD runs in resumable segments: the same call continues a stopped run."""
    _threads(cfg)
    return _sample_and_compare(cfg, build_potential(cfg), Path(cfg.run_dir) / "sample", progress, segment_ps)


def _stderr_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class FramesReport:
    """Targets evaluated on frames from elsewhere (a LAMMPS dump, an extxyz or ASE trajectory)."""

    evaluation: Evaluation
    n_frames: int
    out_dir: Path
    #: N_eff/N of the reweighting when the frames were sampled with other parameters (None: plain averages)
    ess_fraction: float | None = None


#: ``sampled_with`` value naming the configured potential's own parameters (no checkpoint)
SAMPLED_WITH_CONFIG = "config"


def evaluate_frames(cfg: Config, frames_file: str | Path, *, type_map: list[str] | None = None,
                    checkpoint: str | Path | None = None, every: int = 1,
                    state_point: str | None = None, sampled_with: str | Path | None = None) -> FramesReport:
    """Every target's observable on existing frames, against the data; plots and JSON in ``run_dir/evaluate_frames``.

    A file ending in ``.lammpstrj``/``.dump`` or containing ``dump`` is read as a LAMMPS text
    dump (``type_map`` names the element of LAMMPS types 1, 2, ...), one ending in ``.pt`` as an
    exprefine :class:`Trajectory`; anything else through ASE.
    The configured potential (with ``checkpoint``'s parameters if given) serves the
    observables that need one (pressure). With ``systems:`` the frames belong to one state point:
    ``state_point`` names it (its targets and temperature; output in ``run_dir/evaluate_frames/NAME``).

    ``sampled_with``: the frames are a canonical (or NPT) sample of the configured potential with
    these parameters (a checkpoint, or :data:`SAMPLED_WITH_CONFIG` for the config's own), not of
    ``checkpoint``'s: the averages are then reweighted to ``checkpoint``'s parameters with
    w ∝ exp(−(U_checkpoint − U_sampled)/kT) at the state point's temperature — DiffTRe's estimate
    of what a new sampling would give, reliable while N_eff/N (``ess_fraction``) stays high.
    """
    _threads(cfg)
    path = Path(frames_file)
    if not path.exists():
        raise FileNotFoundError(f"frames file not found: {path}")
    spec = frames_state_point(cfg, state_point)
    targets = [build_target(t, spec.sampling.temperature_K) for t in spec.targets]  # read before the frames
    temperature = spec.sampling.temperature_K
    if path.suffix in (".lammpstrj", ".dump") or "dump" in path.name:
        trajectory = read_lammps_dump(path, type_map, temperature_K=temperature, every=every)
    elif path.suffix == ".pt":  # exprefine's own trajectory file (sample, refine, a check run)
        trajectory = Trajectory.load(path).select(slice(None, None, every))
    else:
        trajectory = read_frames(path, slice(None, None, every), temperature_K=temperature)
    potential = build_potential(cfg)
    if checkpoint is not None:
        load_potential_state(potential, checkpoint)
    log_w = None
    if sampled_with is not None:
        log_w = reweighting_log_weights(cfg, trajectory, potential, sampled_with, temperature)
    evaluation = evaluate_targets(targets, trajectory, potential, log_weights=log_w)
    ess_fraction = None if log_w is None else effective_sample_size(log_w) / trajectory.n_frames
    out_dir = _point_out_dir(cfg, spec, Path(cfg.run_dir) / "evaluate_frames")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_resolved(cfg, out_dir / "config.yaml")
    append_run_info(out_dir)
    _write_comparison(targets, evaluation, out_dir)
    (out_dir / "evaluation.json").write_text(json.dumps({
        "frames_file": str(path), "state_point": spec.name, "n_frames": trajectory.n_frames,
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "sampled_with": None if sampled_with is None else str(sampled_with), "ess_fraction": ess_fraction,
        "rmse": evaluation.rmse, "loss": evaluation.loss,
        "scalar_targets": evaluation.scalars(),
    }, indent=2))
    return FramesReport(evaluation=evaluation, n_frames=trajectory.n_frames, out_dir=out_dir,
                        ess_fraction=ess_fraction)


def reweighting_log_weights(cfg: Config, trajectory: Trajectory, potential: Potential,
                            sampled_with: str | Path, temperature_K: float) -> torch.Tensor:
    """[n_frames] normalised float64 log-weights that take frames sampled with ``sampled_with``'s parameters
    (a checkpoint of the configured potential, or :data:`SAMPLED_WITH_CONFIG`) to ``potential``'s at
    ``temperature_K``: ln w_i = −(U_i − U_i^sampled)/kT − ln Σ_j exp(…). Energies in eV."""
    sampler = build_potential(cfg)
    if str(sampled_with) != SAMPLED_WITH_CONFIG:
        load_potential_state(sampler, sampled_with)  # a missing file: "checkpoint not found: PATH"
    with torch.no_grad():
        return log_weights(frame_energies(potential, trajectory), frame_energies(sampler, trajectory),
                           kT_eV(temperature_K))


def frames_state_point(cfg: Config, name: str | None) -> StatePointSpec:
    """The state point whose targets existing frames are compared with: the only one, or the one named."""
    points = cfg.state_points()
    names = [p.name for p in points]
    if name is None:
        if len(points) > 1:
            raise ValueError(f"evaluate --frames: the config has {len(points)} state points ({', '.join(names)}); "
                             f"name the frames' one with --state-point NAME")
        return points[0]
    if cfg.systems is None:
        raise ValueError("--state-point: the config has one state point (system:), not a systems: list")
    if name not in names:
        raise ValueError(f"--state-point {name!r}: no such state point; the config has {', '.join(names)}")
    return points[names.index(name)]


def run_evaluation(cfg: Config, checkpoint: str | Path, progress: bool = True,
                   segment_ps: float | None = None) -> list[SamplingReport]:
    """Sample every state point with the parameters of ``checkpoint`` and compare with its targets
    (``run_dir/evaluate`` or ``run_dir/evaluate/NAME``); ``segment_ps`` as :func:`run_sampling`."""
    _threads(cfg)
    potential = build_potential(cfg)
    load_potential_state(potential, checkpoint)
    return _sample_and_compare(cfg, potential, Path(cfg.run_dir) / "evaluate", progress, segment_ps)
