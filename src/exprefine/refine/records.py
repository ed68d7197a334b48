"""What a refinement records: one row per update, target evaluations, and the final result.

Plain dataclasses shared by the refiner, its log, its plots and its checkpoints (which store
them as plain data: :func:`evaluation_to_plain` / :func:`evaluation_from_plain`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from ..blocking import block_standard_error
from ..data.metrics import DFTErrors
from ..potentials.base import Potential
from ..reweighting import effective_sample_size
from ..trajectory import Trajectory
from .targets import Target, total_loss


@dataclass
class UpdateRecord:
    """One row of the run log: the state at update ``update`` before its Adam step."""

    update: int
    loss: float
    ess_fraction: float
    resampled: bool
    learning_rate: float
    wall_time_s: float
    n_frames: int
    target_loss: dict[str, float] = field(default_factory=dict)
    target_rmse: dict[str, float] = field(default_factory=dict)
    parameters: dict[str, float] = field(default_factory=dict)
    accepted: bool = True
    damping: float = 0.0
    step_spread_kT: float = 0.0
    dft_loss: float = 0.0
    #: samplings that blew up before this update and were rolled back (parameters reset, step shrunk)
    rollbacks: int = 0
    #: |∂L/∂θ| of the reweighted loss (Adam; 0 for Gauss–Newton)
    gradient_norm: float = 0.0
    #: several state points: each one's loss and N_eff/N (``ess_fraction`` is the smallest), and
    #: those sampled anew before this update (empty with one state point)
    point_loss: dict[str, float] = field(default_factory=dict)
    point_ess_fraction: dict[str, float] = field(default_factory=dict)
    resampled_points: list[str] = field(default_factory=list)
    #: Σ ((θ − μ)/σ)² of the parameter priors (included in ``loss``; None without priors)
    prior_loss: float | None = None
    #: Gauss–Newton: eigenvalues of the data's JᵀJ, ascending (a tiny one: a direction the data leave free)
    curvature_eigenvalues: list[float] | None = None


@dataclass
class Evaluation:
    """Ensemble averages of every target at one set of parameters, from one trajectory."""

    predictions: list[torch.Tensor]
    rmse: dict[str, float]
    loss: float
    n_frames: int
    fingerprint: str
    #: block-average standard errors of every target's prediction (10 blocks; same shape as the prediction)
    standard_errors: dict[str, torch.Tensor] = field(default_factory=dict)

    def scalars(self) -> dict[str, dict[str, float]]:
        """Value and standard error of every scalar target (pressure in bar, density, a peak position)."""
        out = {}
        for name, p in zip(self.rmse, self.predictions):
            if p.numel() == 1:
                se = self.standard_errors.get(name)
                out[name] = {"value": float(p), "standard_error": float("nan") if se is None else float(se)}
        return out


@dataclass
class RefinementResult:
    """What a finished refinement returns (the potential itself holds the final parameters)."""

    history: list[UpdateRecord]
    before: Evaluation
    after: Evaluation | None
    wall_time_s: float
    n_samplings: int
    run_dir: Path | None
    dft_before: DFTErrors | None = None
    dft_after: DFTErrors | None = None
    #: set when the final check fell back from the last step's parameters (and why)
    final_check_note: str | None = None
    #: wall time of each session of a resumed run (one entry when it ran in one go); they add up to
    #: ``wall_time_s``. A killed session counts up to its last checkpoint (later work was lost and redone).
    wall_time_segments_s: list[float] = field(default_factory=list)
    #: the named parameters at the end (the potential's ``summary()``; empty when it offers none)
    parameters: dict[str, float] = field(default_factory=dict)
    #: several state points: each one's evaluation before and after, by name (empty with one)
    point_before: dict[str, Evaluation] = field(default_factory=dict)
    point_after: dict[str, Evaluation] = field(default_factory=dict)

    def summary(self, parameters: dict[str, float] | None = None,
                parameters_before: dict[str, float] | None = None) -> dict[str, Any]:
        """The run's ``summary.json``: losses and RMSEs before/after, scalar targets, ``parameters``
        (after; ``parameters_before`` at the start), held-out DFT errors, the wall time and its
        sessions (``wall_time_s`` is their sum: a resumed run's sessions added up)."""
        return {
            "n_updates": len(self.history),
            "n_samplings": self.n_samplings,
            "wall_time_s": self.wall_time_s,
            "wall_time_segments_s": self.wall_time_segments_s or [self.wall_time_s],
            "n_rejected_steps": sum(not r.accepted for r in self.history),
            "n_rollbacks": sum(r.rollbacks for r in self.history),
            "rmse_before": self.before.rmse,
            "rmse_after": self.after.rmse if self.after else None,
            "loss_before": self.before.loss,
            "loss_after": self.after.loss if self.after else None,
            "scalar_targets_before": self.before.scalars(),
            "scalar_targets_after": self.after.scalars() if self.after else None,
            "parameters": self.parameters if parameters is None else parameters,
            "parameters_before": parameters_before if parameters_before is not None
            else (dict(self.history[0].parameters) if self.history else {}),
            "dft_test_errors_before": None if self.dft_before is None else asdict(self.dft_before),
            "dft_test_errors_after": None if self.dft_after is None else asdict(self.dft_after),
            "final_check_note": self.final_check_note,
        }


def evaluate_targets(targets: Sequence[Target], trajectory: Trajectory, potential: Potential, chunk_size: int = 32,
                     values: Sequence[torch.Tensor | None] | None = None,
                     log_weights: torch.Tensor | None = None) -> Evaluation:
    """Averages of every target's observable over a trajectory: plain, or reweighted by ``log_weights``.

    ``values``: per-frame values of the observables already computed on ``trajectory`` (None where
    not), e.g. the static values of a reweighting ensemble; the others are computed here.
    ``log_weights``: [n_frames] normalised log-weights (float64, Σ exp = 1) of the frames, e.g. to
    take frames sampled with other parameters to ``potential``'s (None: every frame 1/N). The
    standard errors of a reweighted average are the plain block errors times √(N/N_eff) (Kish's
    approximation: fewer effective frames, the same correlation between them).
    """
    predictions = []
    standard_errors = {}
    known = list(values) if values is not None else [None] * len(targets)
    n = trajectory.n_frames
    if log_weights is None:
        weights = torch.full((n,), 1.0 / n, dtype=torch.float64)
        inflation = 1.0
    else:
        if log_weights.shape != (n,):
            raise ValueError(f"log_weights: expected shape ({n},), got {tuple(log_weights.shape)}")
        weights = log_weights.detach().to(torch.float64).exp()
        inflation = (n / effective_sample_size(log_weights.detach().to(torch.float64))) ** 0.5
    with torch.no_grad():
        for t, given in zip(targets, known):
            per_frame = (given if given is not None else t.observable.evaluate(trajectory, potential, chunk_size)
                         ).to(torch.float64)
            predictions.append(t.observable.reduce(per_frame, weights.to(per_frame.device)))
            standard_errors[t.name] = block_standard_error(per_frame, reduce=t.observable.reduce) * inflation
        loss = float(total_loss(list(targets), predictions))
    return Evaluation(
        predictions=predictions,
        rmse={t.name: t.rmse(p) for t, p in zip(targets, predictions)},
        loss=loss,
        n_frames=trajectory.n_frames,
        fingerprint=trajectory.fingerprint,
        standard_errors=standard_errors,
    )


def evaluation_to_plain(ev: Evaluation) -> dict[str, Any]:
    return {"predictions": ev.predictions, "rmse": ev.rmse, "loss": ev.loss,
            "n_frames": ev.n_frames, "fingerprint": ev.fingerprint, "standard_errors": ev.standard_errors}


def evaluation_from_plain(data: dict[str, Any]) -> Evaluation:
    return Evaluation(**data)


def merge_evaluations(names: Sequence[str], evaluations: Sequence[Evaluation],
                      targets: Sequence[Sequence[Target]]) -> Evaluation:
    """One evaluation of several state points (``names``): their targets as ``point.target``, losses added.

    A single state point's evaluation is returned as it is (its targets keep their names).
    """
    if len(evaluations) == 1:
        return evaluations[0]
    predictions: list[torch.Tensor] = []
    rmse: dict[str, float] = {}
    errors: dict[str, torch.Tensor] = {}
    for name, ev, point_targets in zip(names, evaluations, targets):
        predictions += ev.predictions
        for t in point_targets:
            rmse[f"{name}.{t.name}"] = ev.rmse[t.name]
            if t.name in ev.standard_errors:
                errors[f"{name}.{t.name}"] = ev.standard_errors[t.name]
    return Evaluation(predictions=predictions, rmse=rmse, loss=float(sum(ev.loss for ev in evaluations)),
                      n_frames=sum(ev.n_frames for ev in evaluations),
                      fingerprint="+".join(ev.fingerprint for ev in evaluations), standard_errors=errors)
