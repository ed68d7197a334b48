"""The jobs behind the CLI subcommands, as Python functions: refine, sample, evaluate."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .builders import (
    build_potential,
    build_refiner,
    build_state,
    build_targets,
    load_potential_state,
    sampler_settings,
    save_native_models,
)
from .config import Config, save_resolved
from .refine import Evaluation, RefinementResult, evaluate_targets
from .refine.plots import plot_targets
from .sampling import SampleResult, sample


class RunDirectoryInUse(RuntimeError):
    """The run directory already holds a refinement that would be overwritten."""


def _threads(cfg: Config) -> None:
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)


def run_refinement(cfg: Config, resume: bool = False, overwrite: bool = False, progress: bool = True) -> RefinementResult:
    """Refine the configured potential against the configured targets; write everything to ``cfg.run_dir``.

    A run directory that already holds a checkpoint is continued with ``resume`` and
    is never overwritten silently (``overwrite`` starts afresh).
    """
    _threads(cfg)
    run_dir = Path(cfg.run_dir)
    latest = run_dir / "checkpoints" / "latest.pt"
    if latest.exists() and not (resume or overwrite):
        raise RunDirectoryInUse(
            f"{run_dir} already holds a refinement (checkpoints/latest.pt): continue it with --resume, "
            f"or start afresh with --overwrite"
        )
    if resume and not latest.exists():
        raise FileNotFoundError(f"nothing to resume: {latest} does not exist")
    refiner = build_refiner(cfg, progress=progress)
    if not resume:
        _remove_refinement_outputs(run_dir)
    save_resolved(cfg, run_dir / "config.yaml")
    result = refiner.run(resume=resume)
    save_native_models(cfg, refiner.potential)
    return result


def _remove_refinement_outputs(run_dir: Path) -> None:
    """Delete what an earlier refinement wrote (checkpoints, trajectories, model, logs, plots), nothing else."""
    for sub in ("checkpoints", "trajectories"):
        for path in (run_dir / sub).glob("*.pt"):
            path.unlink()
    for pattern in ("final_model.pt", "summary.json", "history.png", "target_*.png", "log.csv", "log.jsonl"):
        for path in run_dir.glob(pattern):
            path.unlink()


@dataclass
class SamplingReport:
    """A sampling run and, if the config has targets, their comparison with the data."""

    result: SampleResult
    evaluation: Evaluation | None
    out_dir: Path


def _sample_and_compare(cfg: Config, potential, out_dir: Path, progress: bool) -> SamplingReport:
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = sampler_settings(cfg.sampling)
    result = sample(potential, build_state(cfg), settings, progress=progress)
    result.trajectory.save(out_dir / "trajectory.pt")
    evaluation = None
    if cfg.targets:
        targets = build_targets(cfg)
        evaluation = evaluate_targets(targets, result.trajectory, potential)
        plot_targets(targets, evaluation, None, out_dir)
        (out_dir / "evaluation.json").write_text(json.dumps({
            "rmse": evaluation.rmse, "loss": evaluation.loss, "n_frames": evaluation.n_frames,
            "fingerprint": evaluation.fingerprint, "wall_time_s": result.wall_time_s,
        }, indent=2))
    return SamplingReport(result=result, evaluation=evaluation, out_dir=out_dir)


def run_sampling(cfg: Config, progress: bool = True) -> SamplingReport:
    """MD with the configured potential; trajectory and target comparison in ``run_dir/sample``."""
    _threads(cfg)
    return _sample_and_compare(cfg, build_potential(cfg), Path(cfg.run_dir) / "sample", progress)


def run_evaluation(cfg: Config, checkpoint: str | Path, progress: bool = True) -> SamplingReport:
    """Sample with the parameters of ``checkpoint`` and compare with every target (``run_dir/evaluate``)."""
    _threads(cfg)
    potential = build_potential(cfg)
    load_potential_state(potential, checkpoint)
    return _sample_and_compare(cfg, potential, Path(cfg.run_dir) / "evaluate", progress)
