"""Fitting a potential to labelled reference data (energies, forces, stress): the DFT loss and a trainer.

The loss is :func:`exprefine.data.loss.dft_loss_terms` (re-exported here), the one the fused
refinement adds to the experimental loss.

:func:`train` runs Adam over shuffled batches, evaluates the validation set after every
epoch, keeps the parameters with the lowest validation loss, writes a checkpoint every
``checkpoint_every`` epochs (``run_dir/checkpoints/train_latest.pt``, weights-only loadable)
and resumes from it exactly (``resume=True``).
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_path
from .data.dft import DFTDataset
from .data.loss import DFTLossTerms, dft_loss, dft_loss_terms
from .data.metrics import DFTErrors, evaluate_dft_errors
from .data.predict import potential_device
from .io.checkpoint import load_checkpoint, save_checkpoint
from .potentials.base import Potential

CHECKPOINT_NAME = "train_latest.pt"
__all__ = ["CHECKPOINT_NAME", "LR_SCHEDULES", "DFTLossTerms", "EpochRecord", "TrainResult", "TrainSettings", "dft_loss",
           "dft_loss_terms", "plot_learning_curves", "train", "write_train_log"]


# --------------------------------------------------------------- settings
LR_SCHEDULES = ("constant", "exponential", "plateau")


@dataclass
class TrainSettings:
    """How :func:`train` fits a potential to labelled data.

    Attributes:
        epochs: passes over the training set.
        batch_size: frames per Adam step.
        learning_rate: initial Adam step size.
        energy_weight, force_weight, stress_weight: w_E (per (eV/atom)²), w_F (per (eV/Å)²),
            w_S (per (eV/Å³)²) of the loss.
        seed: seed of the shuffling of the training frames.
        shuffle: visit the training frames in a new random order every epoch.
        lr_schedule: ``"constant"``, ``"exponential"`` (× ``lr_factor`` after every epoch) or
            ``"plateau"`` (× ``lr_factor`` after ``patience`` epochs without a lower validation loss).
        lr_factor: the factor of the schedule.
        patience: epochs without improvement before a plateau step.
        min_learning_rate: the plateau schedule goes no lower.
        early_stopping_patience: stop after this many epochs without improvement (None: never).
        max_grad_norm: clip the gradient norm to this (None: no clipping).
        eval_batch_size: frames per batch when evaluating the validation set.
        checkpoint_every: write ``train_latest.pt`` every this many epochs (and after the last).
    """

    epochs: int = 100
    batch_size: int = 4
    learning_rate: float = 1e-3
    energy_weight: float = 1.0
    force_weight: float = 1.0
    stress_weight: float = 0.0
    seed: int = 0
    shuffle: bool = True
    lr_schedule: str = "plateau"
    lr_factor: float = 0.5
    patience: int = 10
    min_learning_rate: float = 0.0
    early_stopping_patience: int | None = None
    max_grad_norm: float | None = None
    eval_batch_size: int = 16
    checkpoint_every: int = 1

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"epochs must be ≥ 0, got {self.epochs}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("batch_size and eval_batch_size must be ≥ 1")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if min(self.energy_weight, self.force_weight, self.stress_weight) < 0:
            raise ValueError("loss weights must be ≥ 0")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not 0.0 < self.lr_factor <= 1.0:
            raise ValueError(f"lr_factor must be in (0, 1], got {self.lr_factor}")
        if self.patience < 0:
            raise ValueError(f"patience must be ≥ 0, got {self.patience}")
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be ≥ 1, got {self.checkpoint_every}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ValueError("early_stopping_patience must be ≥ 1 or None")


#: settings that may differ between a run and its resumption
_RESUMABLE_CHANGES = {"epochs", "checkpoint_every", "eval_batch_size", "early_stopping_patience"}


# ---------------------------------------------------------------- results
@dataclass
class EpochRecord:
    """One row of the training log.

    The train_* values are averages over the epoch's batches (the parameters change during
    the epoch); valid_* are evaluated after the epoch. ``selection_loss`` is the validation
    loss (the training loss without a validation set); the best epoch minimises it.
    """

    epoch: int
    train_loss: float
    train_energy_rmse_meV_per_atom: float
    train_force_rmse_meV_per_A: float
    valid_loss: float | None
    valid_energy_rmse_meV_per_atom: float | None
    valid_force_rmse_meV_per_A: float | None
    valid_stress_rmse_meV_per_A3: float | None
    selection_loss: float
    learning_rate: float
    wall_time_s: float
    is_best: bool


@dataclass
class TrainResult:
    """What :func:`train` returns; the potential holds the best parameters.

    Attributes:
        history: one record per epoch (all epochs, including those before a resume).
        best_epoch: the epoch (1-based) whose parameters were restored.
        best_loss: its selection loss.
        valid_before, valid_after: validation errors before training and at the best epoch.
        stopped_early: early stopping ended the run.
        wall_time_s: training time summed over resumptions.
        run_dir: where logs, plots and checkpoints went.
    """

    history: list[EpochRecord]
    best_epoch: int
    best_loss: float
    valid_before: DFTErrors | None
    valid_after: DFTErrors | None
    stopped_early: bool
    wall_time_s: float
    run_dir: Path | None


# ----------------------------------------------------------------- helpers
def _scheduler(optimizer: torch.optim.Optimizer, settings: TrainSettings) -> Any:
    if settings.lr_schedule == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=settings.lr_factor)
    if settings.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=settings.lr_factor, patience=settings.patience,
            min_lr=settings.min_learning_rate)
    return None


def _step_scheduler(scheduler: Any, settings: TrainSettings, selection_loss: float) -> None:
    if settings.lr_schedule == "plateau":
        scheduler.step(selection_loss)
    elif settings.lr_schedule == "exponential":
        scheduler.step()


def _clone_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _errors_from_plain(data: dict[str, Any] | None) -> DFTErrors | None:
    return None if data is None else DFTErrors(**data)


def write_train_log(history: list[EpochRecord], path: str | Path) -> Path:
    """Write the epoch records as CSV (empty cells for missing values)."""
    path = Path(path)
    names = [f.name for f in fields(EpochRecord)]
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(names)
        for record in history:
            row = asdict(record)
            writer.writerow(["" if row[n] is None else (int(row[n]) if isinstance(row[n], bool) else row[n])
                             for n in names])
    return path


def plot_learning_curves(history: list[EpochRecord], path: str | Path) -> Path | None:
    """PNG of the training and validation loss, validation RMSEs and learning rate per epoch."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r.epoch for r in history]
    best = [r.epoch for r in history if r.is_best]
    has_valid = history[0].valid_loss is not None
    fig, axes = plt.subplots(4, 1, figsize=(6.0, 9.0), sharex=True)
    axes[0].semilogy(epochs, [r.train_loss for r in history], "o-", ms=3, label="train")
    if has_valid:
        axes[0].semilogy(epochs, [r.valid_loss for r in history], "o-", ms=3, label="validation")
    axes[0].set_ylabel("DFT loss")
    axes[0].legend(fontsize=8)
    key_e = "valid_energy_rmse_meV_per_atom" if has_valid else "train_energy_rmse_meV_per_atom"
    key_f = "valid_force_rmse_meV_per_A" if has_valid else "train_force_rmse_meV_per_A"
    which = "validation" if has_valid else "train"
    axes[1].semilogy(epochs, [getattr(r, key_e) for r in history], "o-", ms=3, color="C2")
    axes[1].set_ylabel(f"{which} E RMSE\n(meV/atom)")
    axes[2].semilogy(epochs, [getattr(r, key_f) for r in history], "o-", ms=3, color="C3")
    axes[2].set_ylabel(f"{which} F RMSE\n(meV/Å)")
    axes[3].semilogy(epochs, [r.learning_rate for r in history], "o-", ms=3, color="C4")
    axes[3].set_ylabel("learning rate")
    axes[3].set_xlabel("epoch")
    if best:
        for ax in axes:
            ax.axvline(best[-1], color="0.7", lw=0.8, zorder=0)
        axes[0].set_title(f"grey line: best epoch {best[-1]}", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(str(path), dpi=120)
    plt.close(fig)
    return path


# ----------------------------------------------------------------- trainer
@dataclass
class _RunState:
    """Everything of a training run besides the potential, optimizer, schedule and generator."""

    history: list[EpochRecord]
    best_state: dict[str, torch.Tensor]
    best_loss: float
    best_epoch: int
    bad_epochs: int
    stopped_early: bool
    valid_before: DFTErrors | None
    elapsed_before_s: float


def _evaluate(potential: Potential, dataset: DFTDataset, settings: TrainSettings) -> DFTErrors:
    return evaluate_dft_errors(potential, dataset, settings.eval_batch_size,
                               stress=None if settings.stress_weight > 0 else False)


def _save_train_checkpoint(path: Path, potential: Potential, optimizer: torch.optim.Optimizer, scheduler: Any,
                           generator: torch.Generator, run: _RunState, settings: TrainSettings,
                           wall_time_s: float) -> None:
    save_checkpoint(path, {
        "kind": "train",
        "potential_state": potential.state_dict(),
        "optimizer_state": optimizer.state_dict(),
        "scheduler_state": scheduler.state_dict() if scheduler is not None else None,
        "generator_state": generator.get_state(),
        "history": [asdict(r) for r in run.history],
        "best_state": run.best_state,
        "best_loss": run.best_loss,
        "best_epoch": run.best_epoch,
        "bad_epochs": run.bad_epochs,
        "stopped_early": run.stopped_early,
        "valid_before": asdict(run.valid_before) if run.valid_before is not None else None,
        "settings": asdict(settings),
        "wall_time_s": wall_time_s,
    })


def _load_train_checkpoint(path: Path, potential: Potential, optimizer: torch.optim.Optimizer, scheduler: Any,
                           generator: torch.Generator, settings: TrainSettings) -> _RunState:
    ck = load_checkpoint(path)
    if ck.get("kind") != "train":
        raise ValueError(f"{path} is not a training checkpoint")
    stored = ck["settings"]
    changed = sorted(k for k, v in asdict(settings).items() if k not in _RESUMABLE_CHANGES and stored.get(k) != v)
    if changed:
        raise ValueError(f"cannot resume {path} with changed settings: {', '.join(changed)}")
    potential.load_state_dict(ck["potential_state"])
    optimizer.load_state_dict(ck["optimizer_state"])
    if scheduler is not None:
        scheduler.load_state_dict(ck["scheduler_state"])
    generator.set_state(ck["generator_state"])
    return _RunState(
        history=[EpochRecord(**r) for r in ck["history"]],
        best_state=ck["best_state"],
        best_loss=float(ck["best_loss"]),
        best_epoch=int(ck["best_epoch"]),
        bad_epochs=int(ck["bad_epochs"]),
        stopped_early=bool(ck["stopped_early"]),
        valid_before=_errors_from_plain(ck["valid_before"]),
        elapsed_before_s=float(ck["wall_time_s"]),
    )


def _train_epoch(potential: Potential, train_set: DFTDataset, optimizer: torch.optim.Optimizer,
                 params: list[torch.nn.Parameter], generator: torch.Generator,
                 settings: TrainSettings) -> tuple[float, float, float]:
    """One pass of Adam steps; returns the frame-averaged loss and the running energy and force RMSE (meV)."""
    weights = (settings.energy_weight, settings.force_weight, settings.stress_weight)
    loss_sum = e_sq_sum = f_sq_sum = 0.0
    n_frames = n_components = 0
    for batch in train_set.batches(settings.batch_size, shuffle=settings.shuffle, generator=generator,
                                   device=potential_device(potential)):
        optimizer.zero_grad(set_to_none=True)
        terms = dft_loss_terms(potential, batch, *weights)
        terms.total.backward()
        if settings.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
        optimizer.step()
        loss_sum += float(terms.total.detach()) * terms.n_frames
        e_sq_sum += float(terms.energy_mse.detach()) * terms.n_frames
        f_sq_sum += float(terms.force_mse.detach()) * 3 * terms.n_atoms
        n_frames += terms.n_frames
        n_components += 3 * terms.n_atoms
    return (loss_sum / n_frames, 1000.0 * math.sqrt(e_sq_sum / n_frames),
            1000.0 * math.sqrt(f_sq_sum / n_components))


def train(
    potential: Potential,
    train_set: DFTDataset,
    valid_set: DFTDataset | None = None,
    settings: TrainSettings | None = None,
    run_dir: str | Path | None = None,
    progress: bool = True,
    resume: bool = False,
) -> TrainResult:
    """Fit the trainable parameters of ``potential`` to ``train_set`` with Adam.

    After every epoch the validation errors are evaluated; the parameters with the lowest
    validation loss (training loss without a validation set) are restored at the end.

    With ``run_dir``: ``checkpoints/train_latest.pt`` (parameters, optimizer, schedule,
    shuffling generator, history, best parameters; ``torch.load(weights_only=True)``) every
    ``checkpoint_every`` epochs and after the last, ``train_log.csv`` after every epoch, and
    at the end ``learning_curves.png``, ``train_summary.json`` (validation errors before and
    after) and ``train_model.pt`` (the best state_dict).

    Args:
        potential: the model; its trainable parameters are updated in place.
        train_set: frames to fit.
        valid_set: frames to select the best epoch (and drive the plateau schedule) with.
        settings: see :class:`TrainSettings`.
        run_dir: where checkpoints, the log and the plot go (None: nothing is written).
        progress: show a progress bar over epochs.
        resume: continue from ``run_dir/checkpoints/train_latest.pt``; ``settings.epochs`` may be
            raised to train longer. The continuation equals an uninterrupted run.
    """
    settings = settings or TrainSettings()
    run_dir = Path(run_dir) if run_dir is not None else None
    if train_set.n_frames == 0:
        raise ValueError("the training set is empty")
    params = potential.trainable_parameters()
    if not params:
        raise ValueError("the potential has no trainable parameters")
    optimizer = torch.optim.Adam(params, lr=settings.learning_rate)
    scheduler = _scheduler(optimizer, settings)
    generator = torch.Generator().manual_seed(int(settings.seed))
    ckpt_path = run_dir / "checkpoints" / CHECKPOINT_NAME if run_dir is not None else None

    if resume:
        if ckpt_path is None or not ckpt_path.exists():
            raise FileNotFoundError(f"nothing to resume: no training checkpoint at {ckpt_path}")
        run = _load_train_checkpoint(ckpt_path, potential, optimizer, scheduler, generator, settings)
    else:
        run = _RunState(history=[], best_state=_clone_state(potential), best_loss=math.inf, best_epoch=0,
                        bad_epochs=0, stopped_early=False, elapsed_before_s=0.0,
                        valid_before=_evaluate(potential, valid_set, settings) if valid_set is not None else None)
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)

    t_start = time.perf_counter()
    epoch = len(run.history)
    bar = None
    if progress and settings.epochs > epoch and not run.stopped_early:
        from tqdm.auto import tqdm

        bar = tqdm(total=settings.epochs, initial=epoch, desc="train", unit="epoch")
    while epoch < settings.epochs and not run.stopped_early:
        t0 = time.perf_counter()
        lr = float(optimizer.param_groups[0]["lr"])
        train_loss, train_e_rmse, train_f_rmse = _train_epoch(potential, train_set, optimizer, params, generator,
                                                              settings)
        valid = _evaluate(potential, valid_set, settings) if valid_set is not None else None
        valid_loss = (valid.weighted_loss(settings.energy_weight, settings.force_weight, settings.stress_weight)
                      if valid is not None else None)
        selection = valid_loss if valid_loss is not None else train_loss
        epoch += 1
        improved = selection < run.best_loss
        if improved:
            run.best_state, run.best_loss, run.best_epoch, run.bad_epochs = _clone_state(potential), selection, epoch, 0
        else:
            run.bad_epochs += 1
        _step_scheduler(scheduler, settings, selection)
        run.history.append(EpochRecord(
            epoch=epoch,
            train_loss=train_loss,
            train_energy_rmse_meV_per_atom=train_e_rmse,
            train_force_rmse_meV_per_A=train_f_rmse,
            valid_loss=valid_loss,
            valid_energy_rmse_meV_per_atom=valid.energy_rmse_meV_per_atom if valid is not None else None,
            valid_force_rmse_meV_per_A=valid.force_rmse_meV_per_A if valid is not None else None,
            valid_stress_rmse_meV_per_A3=valid.stress_rmse_meV_per_A3 if valid is not None else None,
            selection_loss=selection,
            learning_rate=lr,
            wall_time_s=time.perf_counter() - t0,
            is_best=improved,
        ))
        if settings.early_stopping_patience is not None and run.bad_epochs >= settings.early_stopping_patience:
            run.stopped_early = True
        if run_dir is not None:
            write_train_log(run.history, run_dir / "train_log.csv")
        if ckpt_path is not None and (epoch % settings.checkpoint_every == 0 or epoch == settings.epochs
                                      or run.stopped_early):
            _save_train_checkpoint(ckpt_path, potential, optimizer, scheduler, generator, run, settings,
                                   run.elapsed_before_s + time.perf_counter() - t_start)
        if bar is not None:
            bar.set_postfix(loss=f"{selection:.4g}", lr=f"{lr:.3g}")
            bar.update(1)
    if bar is not None:
        bar.close()

    if run.history:
        potential.load_state_dict(run.best_state)
    result = TrainResult(
        history=run.history,
        best_epoch=run.best_epoch,
        best_loss=run.best_loss,
        valid_before=run.valid_before,
        valid_after=_evaluate(potential, valid_set, settings) if valid_set is not None else None,
        stopped_early=run.stopped_early,
        wall_time_s=run.elapsed_before_s + time.perf_counter() - t_start,
        run_dir=run_dir,
    )
    if run_dir is not None:
        _write_outputs(result, potential, settings, run_dir)
    return result


def _write_outputs(result: TrainResult, potential: Potential, settings: TrainSettings, run_dir: Path) -> None:
    write_train_log(result.history, run_dir / "train_log.csv")
    plot_learning_curves(result.history, run_dir / "learning_curves.png")
    save_checkpoint(run_dir / "train_model.pt", {
        "kind": "train_model",
        "potential_state": potential.state_dict(),
        "best_epoch": result.best_epoch,
        "settings": asdict(settings),
    })
    summary = {
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "best_loss": result.best_loss,
        "stopped_early": result.stopped_early,
        "wall_time_s": result.wall_time_s,
        "valid_before": asdict(result.valid_before) if result.valid_before is not None else None,
        "valid_after": asdict(result.valid_after) if result.valid_after is not None else None,
    }
    (run_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))


__all__ = ["DFTLossTerms", "dft_loss", "dft_loss_terms", "TrainSettings", "EpochRecord", "TrainResult",
           "train", "write_train_log", "plot_learning_curves"]
