"""The DiffTRe refinement loop: sample → reweight for several updates → resample.

Each update: reweight the current trajectory to the current parameters θ; if the
effective sample size N_eff/N falls below ``ess_threshold`` sample a new trajectory
with θ, starting from the last MD state; evaluate the loss and its gradient; take
one optimizer step; write a checkpoint and a log row.

Two optimizers:

* ``adam`` (default, any number of parameters): the chunked reweighted gradient and
  an Adam step. A sampling run that blows up rolls θ back to the parameters of the
  last good trajectory and halves the step size.
* ``gauss_newton`` (few parameters: pair potentials, splines): the Jacobian of the
  reweighted averages and a Levenberg–Marquardt step (:mod:`.gauss_newton`). A step
  whose loss exceeds the loss at the last accepted parameters is rejected: θ returns
  to that point and the damping grows. If the two losses came from different
  trajectories, the accepted point is first re-estimated on a fresh trajectory (its
  old estimate may have been a lucky fluctuation that no later step could beat). A
  blown-up sampling counts as a rejection.
"""

from __future__ import annotations

import copy
import json
import time
from functools import partial
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import torch

from ..blocking import block_standard_error
from ..data.metrics import DFTErrors
from ..observables.base import CellTooSmall
from ..potentials.base import Potential
from ..reweighting import ReweightedStep, reweighted_loss_and_gradient
from ..sampling import MDState, SamplerSettings, SampleResult, SimulationBlowUp, sample
from ..state import State
from ..trajectory import Trajectory
from .checkpoint import load_checkpoint, save_checkpoint
from .fused import FusedDFT, accumulate_dft_gradient, held_out_errors
from .gauss_newton import GaussNewtonSettings, LinearModel, apply_step, gauss_newton_step, linearize
from .log import RunLog
from .targets import Target, total_loss


@dataclass
class RefinerSettings:
    """How the refinement proceeds.

    Attributes:
        n_updates: number of parameter updates (Adam steps).
        learning_rate: Adam step size (in the units of the parameters; LJ uses ln σ, ln ε).
        learning_rate_decay: factor applied to the step size after every update
            (exponential schedule; 1 keeps it constant).
        ess_threshold: resample when N_eff/N falls below this (0.9 as in Thaler & Zavadlav 2021).
        chunk_size: frames per backward pass (bounds memory).
        resample_equilibration_steps: MD steps discarded after each resampling (the first
            trajectory uses the sampler's own equilibration).
        max_rollbacks: consecutive blown-up samplings tolerated before giving up.
        final_check: sample a fresh trajectory with the final parameters and report it.
        progress: show progress bars.
        optimizer: ``"adam"`` or ``"gauss_newton"`` (Levenberg–Marquardt; few parameters).
        adam_betas: Adam's (β₁, β₂), the decay rates of its first and second moment estimates.
        gauss_newton: damping and step-length control of the ``gauss_newton`` optimizer.
    """

    n_updates: int = 50
    learning_rate: float = 0.01
    learning_rate_decay: float = 1.0
    ess_threshold: float = 0.9
    chunk_size: int = 32
    resample_equilibration_steps: int = 100
    max_rollbacks: int = 5
    final_check: bool = True
    progress: bool = True
    optimizer: str = "adam"
    adam_betas: tuple[float, float] = (0.9, 0.999)
    gauss_newton: GaussNewtonSettings = field(default_factory=GaussNewtonSettings)

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "gauss_newton"):
            raise ValueError(f"optimizer must be 'adam' or 'gauss_newton', got {self.optimizer!r}")
        if self.n_updates < 0:
            raise ValueError(f"n_updates must be ≥ 0, got {self.n_updates}")
        if not 0.0 < self.ess_threshold <= 1.0:
            raise ValueError(f"ess_threshold must be in (0, 1], got {self.ess_threshold}")
        if not all(0.0 <= b < 1.0 for b in self.adam_betas):
            raise ValueError(f"adam_betas must lie in [0, 1), got {self.adam_betas}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0.0 < self.learning_rate_decay <= 1.0:
            raise ValueError(f"learning_rate_decay must be in (0, 1], got {self.learning_rate_decay}")


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


@dataclass
class _Anchor:
    """Gauss–Newton: the last accepted parameters, the trajectory they were evaluated on, and the model there."""

    potential_state: dict
    trajectory: Trajectory
    trajectory_file: str | None
    static: list
    model: LinearModel

    @property
    def loss(self) -> float:
        return self.model.loss


@dataclass
class _Step:
    """What one update computed at θ: the reweighted predictions and loss, and the step to take.

    ``delta`` is the Gauss–Newton step (None for Adam, whose gradients are in the parameters' ``.grad``).
    """

    predictions: list[torch.Tensor]
    loss: float
    ess_fraction: float
    parameters: dict[str, float]
    accepted: bool = True
    spread_kT: float = 0.0
    delta: torch.Tensor | None = None
    dft_loss: float = 0.0


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


@dataclass
class _Loop:
    """What the update loop carries from one update to the next; the checkpoint stores all of it."""

    trajectory: Trajectory
    traj_file: str | None
    static: list
    md_start: Any
    #: parameters of the current trajectory (Adam rolls back to them after a blow-up)
    good_state: dict
    n_samplings: int
    before: Evaluation
    damping: float
    dft_before: DFTErrors | None
    history: list[UpdateRecord] = field(default_factory=list)
    next_update: int = 0
    elapsed_before_s: float = 0.0
    rollbacks: int = 0
    anchor: _Anchor | None = None
    reevaluate: bool = False
    #: why the final check did not use the final parameters (None: it did)
    final_note: str | None = None


def evaluate_targets(targets: Sequence[Target], trajectory: Trajectory, potential: Potential, chunk_size: int = 32) -> Evaluation:
    """Plain (unweighted) averages of every target's observable over a trajectory."""
    predictions = []
    standard_errors = {}
    with torch.no_grad():
        for t in targets:
            values = t.observable.evaluate(trajectory, potential, chunk_size).to(torch.float64)
            weights = torch.full((trajectory.n_frames,), 1.0 / trajectory.n_frames, dtype=torch.float64)
            predictions.append(t.observable.reduce(values, weights))
            standard_errors[t.name] = block_standard_error(values, reduce=t.observable.reduce)
        loss = float(total_loss(list(targets), predictions))
    return Evaluation(
        predictions=predictions,
        rmse={t.name: t.rmse(p) for t, p in zip(targets, predictions)},
        loss=loss,
        n_frames=trajectory.n_frames,
        fingerprint=trajectory.fingerprint,
        standard_errors=standard_errors,
    )


def parameter_summary(potential: Potential) -> dict[str, float]:
    """Named scalar values of the parameters, if the potential offers ``summary()``."""
    summary = getattr(potential, "summary", None)
    return dict(summary()) if callable(summary) else {}


class Refiner:
    """Refine ``potential`` so that ensemble averages match ``targets``.

    Args:
        potential: the model; its trainable parameters are updated in place.
        targets: experimental targets.
        sampler_settings: MD settings (ensemble, temperature, lengths, seed).
        start: initial configuration (replicas as several systems).
        settings: refinement settings.
        run_dir: where checkpoints, logs, trajectories and plots go (None: keep nothing).
        config: the resolved configuration stored in every checkpoint (plain data).
        learning_rates: optional step size per parameter (by identity) overriding
            ``settings.learning_rate``, e.g. meV-scale spline knots next to ln σ.
        dft: labelled frames for fused refinement (λ·L_DFT added at every Adam update) and
            for the held-out errors before/after.
    """

    def __init__(
        self,
        potential: Potential,
        targets: Sequence[Target],
        sampler_settings: SamplerSettings,
        start: State,
        settings: RefinerSettings,
        run_dir: str | Path | None = None,
        config: dict[str, Any] | None = None,
        learning_rates: dict[int, float] | None = None,
        dft: FusedDFT | None = None,
    ) -> None:
        if dft is not None and dft.weight > 0 and settings.optimizer == "gauss_newton":
            raise ValueError("fused DFT training needs optimizer adam (force residuals do not fit the "
                             "Gauss–Newton model of ensemble averages)")
        if not targets:
            raise ValueError("at least one target is needed")
        names = [t.name for t in targets]
        if len(set(names)) != len(names):
            raise ValueError(f"target names must be unique, got {names}")
        self.potential = potential
        self.targets = list(targets)
        self.sampler_settings = sampler_settings
        self.start = start
        self.settings = settings
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.config = config or {}
        params = [p for p in potential.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the potential has no trainable parameters")
        rates = learning_rates or {}
        groups: dict[float, list[torch.nn.Parameter]] = {}
        for p in params:
            groups.setdefault(float(rates.get(id(p), settings.learning_rate)), []).append(p)
        self.optimizer = torch.optim.Adam([{"params": ps, "lr": lr} for lr, ps in groups.items()],
                                          lr=settings.learning_rate, betas=settings.adam_betas)
        self.generator = torch.Generator().manual_seed(int(sampler_settings.seed))
        self.dft = dft
        self.dft_generator = torch.Generator().manual_seed(int(sampler_settings.seed) + 1)

    # --------------------------------------------------------------- paths
    def _path(self, *parts: str) -> Path | None:
        if self.run_dir is None:
            return None
        path = self.run_dir.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def latest_checkpoint(self) -> Path | None:
        return self._path("checkpoints", "latest.pt")

    # ------------------------------------------------------------ sampling
    def _sample(self, start: Any, first: bool) -> SampleResult:
        settings = self.sampler_settings
        if not first:
            settings = replace(settings, n_equilibration_steps=self.settings.resample_equilibration_steps)
        if isinstance(start, MDState):
            # the forces of the last MD step belong to the previous parameters: recompute them
            out = self.potential.compute(start.state)
            start = replace(start, forces_eV_per_A=out.forces_eV_per_A, energy_eV=out.energy_eV)
        return sample(self.potential, start, settings, generator=self.generator, progress=self.settings.progress)

    def _static_values(self, trajectory: Trajectory) -> list[torch.Tensor | None]:
        out: list[torch.Tensor | None] = []
        for t in self.targets:
            if t.observable.depends_on_parameters:
                out.append(None)
            else:
                out.append(t.observable.evaluate(trajectory, None, self.settings.chunk_size).to(torch.float64))
        return out

    def _save_trajectory(self, trajectory: Trajectory, index: int) -> str | None:
        path = self._path("trajectories", f"trajectory_{index:04d}.pt")
        if path is None:
            return None
        trajectory.save(path)
        return path.name

    def _reweight(self, trajectory: Trajectory, static: list[torch.Tensor | None], gradient: bool) -> ReweightedStep:
        """Loss, ESS and (if ``gradient``) fresh ∂L/∂θ in the parameters' .grad at the current θ."""
        self.optimizer.zero_grad(set_to_none=True)
        return reweighted_loss_and_gradient(
            self.potential, trajectory, [t.observable for t in self.targets], static,
            partial(total_loss, self.targets), chunk_size=self.settings.chunk_size, compute_gradient=gradient,
        )

    # ---------------------------------------------------------------- loop
    def run(self, resume: bool = False) -> RefinementResult:
        """Run (or, with ``resume``, continue from the latest checkpoint) the refinement."""
        t_start = time.perf_counter()
        gn = self.settings.optimizer == "gauss_newton"
        log = RunLog(self.run_dir) if self.run_dir is not None else None
        if resume:
            loop = self._resumed_loop()
            if log is not None:
                log.truncate(loop.next_update)
        else:
            if log is not None:
                log.reset()
            loop = self._fresh_loop()

        bar = None
        if self.settings.progress and self.settings.n_updates > loop.next_update:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.settings.n_updates, initial=loop.next_update, desc="refine", unit="update")
        while loop.next_update < self.settings.n_updates:
            t0 = time.perf_counter()
            resampled = self._resample_if_needed(loop)
            if resampled is None:  # the sampling blew up and θ was rolled back: try again
                continue
            step = self._gauss_newton_update(loop) if gn else self._adam_update(loop)
            record = UpdateRecord(
                update=loop.next_update,
                loss=step.loss,
                ess_fraction=step.ess_fraction,
                resampled=resampled,
                learning_rate=float(self.optimizer.param_groups[0]["lr"]),
                wall_time_s=time.perf_counter() - t0,
                n_frames=loop.trajectory.n_frames,
                target_loss={t.name: float(t.loss(p)) for t, p in zip(self.targets, step.predictions)},
                target_rmse={t.name: t.rmse(p) for t, p in zip(self.targets, step.predictions)},
                parameters=step.parameters,
                accepted=step.accepted,
                damping=loop.damping if gn else 0.0,
                step_spread_kT=step.spread_kT,
                dft_loss=step.dft_loss,
            )
            if gn:
                apply_step(self.potential, step.delta)
            else:
                self.optimizer.step()
                for group in self.optimizer.param_groups:
                    group["lr"] *= self.settings.learning_rate_decay
            loop.next_update += 1
            loop.history.append(record)
            if log is not None:
                log.append(record)
            self._checkpoint(loop, loop.elapsed_before_s + time.perf_counter() - t_start)
            if bar is not None:
                bar.set_postfix(loss=f"{record.loss:.4g}", ess=f"{record.ess_fraction:.2f}")
                bar.update(1)
        if bar is not None:
            bar.close()

        after = self._final_check(loop) if self.settings.final_check else None
        wall = loop.elapsed_before_s + time.perf_counter() - t_start
        out = RefinementResult(history=loop.history, before=loop.before, after=after, wall_time_s=wall,
                               n_samplings=loop.n_samplings, run_dir=self.run_dir, dft_before=loop.dft_before,
                               dft_after=held_out_errors(self.potential, self.dft), final_check_note=loop.final_note)
        if self.run_dir is not None:
            self._write_outputs(out)
        return out

    def _fresh_loop(self) -> "_Loop":
        """The first trajectory at the starting parameters and the "before" evaluation of every target."""
        result = self._sample(self.start, first=True)
        trajectory = result.trajectory
        return _Loop(
            trajectory=trajectory,
            traj_file=self._save_trajectory(trajectory, 0),
            static=self._static_values(trajectory),
            md_start=result.final,
            good_state=copy.deepcopy(self.potential.state_dict()),
            n_samplings=1,
            before=evaluate_targets(self.targets, trajectory, self.potential, self.settings.chunk_size),
            damping=self.settings.gauss_newton.initial_damping,
            dft_before=held_out_errors(self.potential, self.dft),
        )

    def _resumed_loop(self) -> "_Loop":
        """The loop as the latest checkpoint left it; parameters, optimizer and random streams restored."""
        ckpt_path = self.latest_checkpoint
        if ckpt_path is None or not ckpt_path.exists():
            raise FileNotFoundError(f"nothing to resume: no checkpoint at {ckpt_path}")
        ck = load_checkpoint(ckpt_path)
        self.potential.load_state_dict(ck["potential_state"])
        self.optimizer.load_state_dict(ck["optimizer_state"])
        self.generator.set_state(ck["generator_state"])
        if ck.get("dft_generator_state") is not None:
            self.dft_generator.set_state(ck["dft_generator_state"])
        trajectory = Trajectory.load(self._path("trajectories", ck["trajectory_file"]))
        loop = _Loop(
            trajectory=trajectory,
            traj_file=ck["trajectory_file"],
            static=self._static_values(trajectory),
            md_start=_state_from_plain(ck["md_state"]),
            good_state=ck["reference_potential_state"],
            n_samplings=int(ck["n_samplings"]),
            before=_evaluation_from_plain(ck["before"]),
            damping=self.settings.gauss_newton.initial_damping,
            dft_before=None if ck.get("dft_before") is None else DFTErrors(**ck["dft_before"]),
            history=[UpdateRecord(**r) for r in ck["history"]],
            next_update=int(ck["next_update"]),
            elapsed_before_s=float(ck["wall_time_s"]),
            rollbacks=int(ck.get("rollbacks", 0)),
        )
        gn_state = ck.get("gauss_newton")
        if gn_state is not None:
            loop.damping = float(gn_state["damping"])
            loop.reevaluate = bool(gn_state.get("reevaluate", False))
            if gn_state["anchor_potential_state"] is not None:
                loop.anchor = self._restore_anchor(gn_state, trajectory, loop.traj_file)
        return loop

    def _resample_if_needed(self, loop: "_Loop") -> bool | None:
        """Sample a new trajectory when N_eff/N < ``ess_threshold`` (or a Gauss–Newton re-estimate is due).

        Returns whether it resampled, or None when the sampling blew up (or left a cell too thin
        for an observable's range, :class:`CellTooSmall`): θ is then rolled back
        (Adam: to the last good trajectory's parameters with half the step; Gauss–Newton: a
        shorter step from the last accepted point) and the update is to be tried again.

        Raises:
            RuntimeError: more than ``max_rollbacks`` blow-ups in a row.
        """
        if not loop.reevaluate and (self._reweight(loop.trajectory, loop.static, gradient=False).ess_fraction
                                    >= self.settings.ess_threshold):
            return False
        try:
            result = self._sample(loop.md_start, first=False)
            static = self._static_values(result.trajectory)
        except (SimulationBlowUp, CellTooSmall) as exc:
            loop.rollbacks += 1
            if loop.rollbacks > self.settings.max_rollbacks:
                raise RuntimeError(f"sampling blew up {loop.rollbacks} times in a row; last: {exc}") from exc
            update = loop.next_update
            if self.settings.optimizer == "gauss_newton" and loop.anchor is not None:
                anchor = loop.anchor
                loop.damping *= self.settings.gauss_newton.damping_increase
                self.potential.load_state_dict(anchor.potential_state)
                loop.trajectory, loop.static, loop.traj_file = anchor.trajectory, anchor.static, anchor.trajectory_file
                delta, _ = gauss_newton_step(self.targets, anchor.model, loop.damping,
                                             self.settings.gauss_newton.max_step_kT)
                apply_step(self.potential, delta)
                _warn(f"update {update}: {exc} — parameters rolled back to the last accepted ones, "
                      f"damping raised to {loop.damping:.3g}")
            else:
                self.potential.load_state_dict(loop.good_state)
                for group in self.optimizer.param_groups:
                    group["lr"] *= 0.5
                _warn(f"update {update}: {exc} — parameters rolled back, step size halved to "
                      f"{self.optimizer.param_groups[0]['lr']:.3g}")
            return None
        loop.rollbacks = 0
        loop.trajectory = result.trajectory
        loop.md_start = result.final
        loop.n_samplings += 1
        loop.good_state = copy.deepcopy(self.potential.state_dict())
        loop.traj_file = self._save_trajectory(loop.trajectory, loop.n_samplings - 1)
        loop.static = static
        return True

    def _gauss_newton_update(self, loop: "_Loop") -> "_Step":
        """Linearize at θ, accept or reject θ against the anchor, and the Levenberg–Marquardt step to take."""
        gn_settings = self.settings.gauss_newton
        model = linearize(self.potential, loop.trajectory, self.targets, loop.static, self.settings.chunk_size)
        parameters = parameter_summary(self.potential)  # θ as evaluated, before any rollback below
        accepted, spread, delta = True, 0.0, None
        anchor = loop.anchor
        if loop.reevaluate:
            # θ is the last accepted point on a fresh trajectory: its new estimate replaces the old
            loop.reevaluate = False
            loop.anchor = _Anchor(copy.deepcopy(self.potential.state_dict()), loop.trajectory, loop.traj_file,
                                  loop.static, model)
        elif anchor is not None and model.loss > anchor.loss:
            accepted = False
            loop.damping *= gn_settings.damping_increase
            self.potential.load_state_dict(anchor.potential_state)
            if loop.trajectory is anchor.trajectory:
                # a paired comparison on the same frames: step again, shorter
                loop.trajectory, loop.static, loop.traj_file = anchor.trajectory, anchor.static, anchor.trajectory_file
            else:
                # two independent noisy estimates: the anchor's may have been lucky, so it is
                # re-estimated on a fresh trajectory before the next step (no winner's curse)
                loop.reevaluate = True
                delta = torch.zeros(anchor.model.energy_gradients.shape[1], dtype=torch.float64)
        else:
            if anchor is not None:
                loop.damping = max(loop.damping * gn_settings.damping_decrease, gn_settings.min_damping)
            loop.anchor = _Anchor(copy.deepcopy(self.potential.state_dict()), loop.trajectory, loop.traj_file,
                                  loop.static, model)
        if delta is None:
            delta, spread = gauss_newton_step(self.targets, loop.anchor.model, loop.damping, gn_settings.max_step_kT)
        return _Step(model.predictions, model.loss, model.ess_fraction, parameters,
                     accepted=accepted, spread_kT=spread, delta=delta)

    def _adam_update(self, loop: "_Loop") -> "_Step":
        """The reweighted loss and its gradient at θ (plus λ·L_DFT of a labelled batch) in the parameters' .grad."""
        step = self._reweight(loop.trajectory, loop.static, gradient=True)
        loss, dft_loss = step.loss, 0.0
        parameters = parameter_summary(self.potential)
        if self.dft is not None and self.dft.weight > 0:
            dft_loss = accumulate_dft_gradient(self.potential, self.dft, self.dft_generator)
            loss += self.dft.weight * dft_loss
        return _Step(step.predictions, loss, step.ess_fraction, parameters, dft_loss=dft_loss)

    def _final_check(self, loop: "_Loop") -> Evaluation:
        """Every target on a fresh trajectory with the final parameters.

        The last step was never tested on a trajectory of its own. If its check run blows up or
        leaves a cell too thin for an observable (:class:`CellTooSmall`), the parameters fall back
        to those of the last good trajectory (Gauss–Newton: the last accepted point) and the check
        runs again with them; ``loop.final_note`` says so. Gauss–Newton also falls back when the
        final step made the loss worse.
        """
        gn = self.settings.optimizer == "gauss_newton"
        try:
            result, after = self._check_run(loop, loop.md_start)
        except (SimulationBlowUp, CellTooSmall) as exc:
            to_anchor = gn and loop.anchor is not None
            loop.final_note = (f"the check run of the final parameters failed ({exc}); the parameters of the "
                               f"last {'accepted point' if to_anchor else 'good trajectory'} "
                               "were kept and checked instead")
            _warn(loop.final_note)
            self.potential.load_state_dict(loop.anchor.potential_state if to_anchor else loop.good_state)
            result, after = self._check_run(loop, loop.md_start)
            gn = False  # the fallback point is the accepted one: nothing to compare it with
        if gn and loop.anchor is not None and after.loss > loop.anchor.loss:
            # the last step was never tested: fall back to the last accepted parameters
            _warn(f"the last step raised the loss ({after.loss:.4g} > {loop.anchor.loss:.4g}); "
                  "keeping the last accepted parameters")
            self.potential.load_state_dict(loop.anchor.potential_state)
            result, after = self._check_run(loop, result.final)
        path = self._path("trajectories", "final_check.pt")
        if path is not None:
            result.trajectory.save(path)
        return after

    def _check_run(self, loop: "_Loop", start: Any) -> tuple[SampleResult, Evaluation]:
        """A fresh trajectory from ``start`` at the current parameters and every target's plain average on it."""
        result = self._sample(start, first=False)
        loop.n_samplings += 1
        return result, evaluate_targets(self.targets, result.trajectory, self.potential, self.settings.chunk_size)

    def _restore_anchor(self, gn_state: dict, trajectory: Trajectory, traj_file: str | None) -> _Anchor:
        """Rebuild the last accepted Gauss–Newton point from a checkpoint (the model is recomputed)."""
        anchor_file = gn_state["anchor_trajectory_file"]
        anchor_traj = trajectory if anchor_file == traj_file else Trajectory.load(
            self._path("trajectories", anchor_file))
        static = self._static_values(anchor_traj)
        current = copy.deepcopy(self.potential.state_dict())
        self.potential.load_state_dict(gn_state["anchor_potential_state"])
        model = linearize(self.potential, anchor_traj, self.targets, static, self.settings.chunk_size)
        self.potential.load_state_dict(current)
        return _Anchor(gn_state["anchor_potential_state"], anchor_traj, anchor_file, static, model)

    def _checkpoint(self, loop: "_Loop", wall_time_s: float) -> None:
        path = self.latest_checkpoint
        if path is None:
            return
        anchor = loop.anchor
        anchor_file = anchor.trajectory_file if anchor is not None else None
        traj_file = loop.traj_file
        save_checkpoint(path, {
            "next_update": loop.next_update,
            "potential_state": self.potential.state_dict(),
            "reference_potential_state": loop.good_state,
            "optimizer_state": self.optimizer.state_dict(),
            "generator_state": self.generator.get_state(),
            "history": [asdict(r) for r in loop.history],
            "before": _evaluation_to_plain(loop.before),
            "trajectory_file": traj_file,
            "md_state": _state_to_plain(loop.md_start),
            "n_samplings": loop.n_samplings,
            "wall_time_s": wall_time_s,
            "rollbacks": loop.rollbacks,
            "gauss_newton": {
                "damping": loop.damping,
                "anchor_potential_state": anchor.potential_state if anchor is not None else None,
                "anchor_trajectory_file": anchor_file,
                "reevaluate": loop.reevaluate,
            },
            "dft_generator_state": self.dft_generator.get_state(),
            "dft_before": None if loop.dft_before is None else asdict(loop.dft_before),
            "config": self.config,
        })
        # only now that the checkpoint names the current trajectory may older ones go;
        # the first is kept as the "before" ensemble
        for old in path.parent.parent.glob("trajectories/trajectory_*.pt"):
            if old.name not in (traj_file, anchor_file, "trajectory_0000.pt"):
                old.unlink()

    def _write_outputs(self, result: RefinementResult) -> None:
        from .plots import plot_history, plot_targets

        assert self.run_dir is not None
        save_checkpoint(self.run_dir / "final_model.pt", {
            "potential_state": self.potential.state_dict(),
            "config": self.config,
        })
        plot_history(result.history, self.run_dir / "history.png")
        plot_targets(self.targets, result.before, result.after, self.run_dir)
        summary = {
            "n_updates": len(result.history),
            "n_samplings": result.n_samplings,
            "wall_time_s": result.wall_time_s,
            "rmse_before": result.before.rmse,
            "rmse_after": result.after.rmse if result.after else None,
            "loss_before": result.before.loss,
            "loss_after": result.after.loss if result.after else None,
            "scalar_targets_before": result.before.scalars(),
            "scalar_targets_after": result.after.scalars() if result.after else None,
            "parameters": parameter_summary(self.potential),
            "dft_test_errors_before": None if result.dft_before is None else asdict(result.dft_before),
            "dft_test_errors_after": None if result.dft_after is None else asdict(result.dft_after),
            "final_check_note": result.final_check_note,
        }
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))


def _warn(message: str) -> None:
    import warnings

    warnings.warn(message, RuntimeWarning, stacklevel=3)


def _state_to_plain(md: Any) -> dict[str, Any]:
    state: State = md.state if hasattr(md, "state") else md
    return {
        "positions": state.positions.detach().clone(),
        "cell": state.cell.detach().clone(),
        "pbc": state.pbc.clone(),
        "atomic_numbers": state.atomic_numbers.clone(),
        "masses": state.masses.detach().clone(),
        "system_idx": state.system_idx.clone(),
        "velocities": None if state.velocities is None else state.velocities.detach().clone(),
    }


def _state_from_plain(data: dict[str, Any]) -> State:
    return State(**data)


def _evaluation_to_plain(ev: Evaluation) -> dict[str, Any]:
    return {"predictions": ev.predictions, "rmse": ev.rmse, "loss": ev.loss,
            "n_frames": ev.n_frames, "fingerprint": ev.fingerprint, "standard_errors": ev.standard_errors}


def _evaluation_from_plain(data: dict[str, Any]) -> Evaluation:
    return Evaluation(**data)
