"""The DiffTRe refinement loop: sample → reweight for several updates → resample.

Each update: reweight the current trajectory to the current parameters θ; if the
effective sample size N_eff/N falls below ``ess_threshold`` sample a new trajectory
with θ, starting from the last MD state; let the update rule (:mod:`.update_rules`:
Adam or Gauss–Newton) evaluate the loss and decide its step; take the step; write a
log row and a checkpoint. A sampling that blows up (or leaves a cell too thin for an
observable) is handed to the rule, which rolls θ back; the update is then tried again.
"""

from __future__ import annotations

import copy
import json
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import torch

from ..data.metrics import DFTErrors
from ..io.checkpoint import load_checkpoint, save_checkpoint, state_to_plain
from ..observables.base import CellTooSmall
from ..potentials.base import Potential
from ..sampling import MDState, SampleResult, SamplerSettings, SimulationBlowUp, sample
from ..state import State
from ..trajectory import Trajectory
from .curves import target_curves, write_curves
from .fused import FusedDFT, held_out_errors
from .log import RunLog, update_line
from .plots import plot_curves, plot_history
from .records import (
    Evaluation,
    RefinementResult,
    UpdateRecord,
    evaluate_targets,
    evaluation_from_plain,
    evaluation_to_plain,
)
from .settings import RefinerSettings
from .targets import Target
from .update_rules import AdamRule, Ensemble, GaussNewtonRule, UpdateRule, parameter_summary, reweight


@dataclass
class _Loop:
    """What the update loop carries from one update to the next; the checkpoint stores all of it
    (with the update rule's own state)."""

    ensemble: Ensemble
    md_start: Any
    #: parameters of the current trajectory (what a blow-up rolls back to)
    good_state: dict
    n_samplings: int
    before: Evaluation
    dft_before: DFTErrors | None
    history: list[UpdateRecord] = field(default_factory=list)
    next_update: int = 0
    elapsed_before_s: float = 0.0
    #: wall time of the earlier sessions of a resumed run
    segments_s: list[float] = field(default_factory=list)
    rollbacks: int = 0
    #: blow-ups rolled back since the last update was recorded
    rollbacks_this_update: int = 0
    #: why the final check did not use the final parameters (None: it did)
    final_note: str | None = None


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
        if not any(p.requires_grad for p in potential.parameters()):
            raise ValueError("the potential has no trainable parameters")
        self.potential = potential
        self.targets = list(targets)
        self.sampler_settings = sampler_settings
        self.start = start
        self.settings = settings
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.config = config or {}
        self.generator = torch.Generator().manual_seed(int(sampler_settings.seed))
        self.dft = dft
        self.dft_generator = torch.Generator().manual_seed(int(sampler_settings.seed) + 1)
        self.rule: UpdateRule
        if settings.optimizer == "gauss_newton":
            self.rule = GaussNewtonRule(potential, self.targets, settings.chunk_size, settings.gauss_newton,
                                        logged_learning_rate=settings.learning_rate)
        else:
            self.rule = AdamRule(potential, self.targets, settings.chunk_size, settings.learning_rate,
                                 settings.learning_rate_decay, settings.adam_betas, learning_rates, dft,
                                 self.dft_generator)

    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        """The torch optimizer of the Adam rule (None for Gauss–Newton)."""
        return self.rule.optimizer if isinstance(self.rule, AdamRule) else None

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
            assert out.forces_eV_per_A is not None
            start = replace(start, forces_eV_per_A=out.forces_eV_per_A, energy_eV=out.energy_eV)
        return sample(self.potential, start, settings, generator=self.generator, progress=self.settings.progress)

    def _ensemble(self, trajectory: Trajectory, index: int | None = None, file: str | None = None) -> Ensemble:
        """The trajectory with its static observable values, saved as trajectory ``index`` (or known as ``file``)."""
        static: list[torch.Tensor | None] = []
        for t in self.targets:
            if t.observable.depends_on_parameters:
                static.append(None)
            else:
                static.append(t.observable.evaluate(trajectory, None, self.settings.chunk_size).to(torch.float64))
        if index is not None:
            path = self._path("trajectories", f"trajectory_{index:04d}.pt")
            if path is not None:
                trajectory.save(path)
                file = path.name
        return Ensemble(trajectory, static, file)

    def _load_ensemble(self, file: str) -> Ensemble:
        path = self._path("trajectories", file)
        assert path is not None, "a run without a run directory has no trajectory files"
        return self._ensemble(Trajectory.load(path), file=file)

    # ---------------------------------------------------------------- loop
    def run(self, resume: bool = False) -> RefinementResult:
        """Run (or, with ``resume``, continue from the latest checkpoint) the refinement."""
        t_start = time.perf_counter()
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
            step, loop.ensemble = self.rule.propose(loop.ensemble)
            record = UpdateRecord(
                update=loop.next_update, loss=step.loss, ess_fraction=step.ess_fraction, resampled=resampled,
                learning_rate=self.rule.learning_rate, wall_time_s=time.perf_counter() - t0,
                n_frames=loop.ensemble.trajectory.n_frames,
                target_loss={t.name: float(t.loss(p)) for t, p in zip(self.targets, step.predictions)},
                target_rmse={t.name: t.rmse(p) for t, p in zip(self.targets, step.predictions)},
                parameters=step.parameters, accepted=step.accepted, damping=self.rule.damping,
                step_spread_kT=step.spread_kT, dft_loss=step.dft_loss, rollbacks=loop.rollbacks_this_update,
            )
            loop.rollbacks_this_update = 0
            self.rule.apply(step)
            loop.next_update += 1
            loop.history.append(record)
            if log is not None:
                log.append(record)
            self._checkpoint(loop, loop.elapsed_before_s + time.perf_counter() - t_start,
                             time.perf_counter() - t_start)
            if self.settings.progress_lines:
                print(update_line(record, self.settings.n_updates, loop.elapsed_before_s + time.perf_counter() - t_start),
                      file=sys.stderr, flush=True)
            if bar is not None:
                bar.set_postfix(loss=f"{record.loss:.4g}", ess=f"{record.ess_fraction:.2f}")
                bar.update(1)
        if bar is not None:
            bar.close()

        after = self._final_check(loop) if self.settings.final_check else None
        session = time.perf_counter() - t_start
        out = RefinementResult(history=loop.history, before=loop.before, after=after,
                               wall_time_s=loop.elapsed_before_s + session,
                               n_samplings=loop.n_samplings, run_dir=self.run_dir, dft_before=loop.dft_before,
                               dft_after=held_out_errors(self.potential, self.dft), final_check_note=loop.final_note,
                               wall_time_segments_s=loop.segments_s + [session],
                               parameters=parameter_summary(self.potential))
        if self.run_dir is not None:
            self._write_outputs(out)
        return out

    def _fresh_loop(self) -> _Loop:
        """The first trajectory at the starting parameters and the "before" evaluation of every target."""
        result = self._sample(self.start, first=True)
        trajectory = result.trajectory
        return _Loop(
            ensemble=self._ensemble(trajectory, 0),
            md_start=result.final,
            good_state=copy.deepcopy(self.potential.state_dict()),
            n_samplings=1,
            before=evaluate_targets(self.targets, trajectory, self.potential, self.settings.chunk_size),
            dft_before=held_out_errors(self.potential, self.dft),
        )

    def _resumed_loop(self) -> _Loop:
        """The loop as the latest checkpoint left it; parameters, update rule and random streams restored."""
        ckpt_path = self.latest_checkpoint
        if ckpt_path is None or not ckpt_path.exists():
            raise FileNotFoundError(f"nothing to resume: no checkpoint at {ckpt_path}")
        ck = load_checkpoint(ckpt_path)
        self.potential.load_state_dict(ck["potential_state"])
        self.generator.set_state(ck["generator_state"])
        if ck.get("dft_generator_state") is not None:
            self.dft_generator.set_state(ck["dft_generator_state"])
        ensemble = self._load_ensemble(ck["trajectory_file"])
        self.rule.restore(ck, ensemble, self._load_ensemble)
        return _Loop(
            ensemble=ensemble,
            md_start=State(**ck["md_state"]),
            good_state=ck["reference_potential_state"],
            n_samplings=int(ck["n_samplings"]),
            before=evaluation_from_plain(ck["before"]),
            dft_before=None if ck.get("dft_before") is None else DFTErrors(**ck["dft_before"]),
            history=[UpdateRecord(**r) for r in ck["history"]],
            next_update=int(ck["next_update"]),
            elapsed_before_s=float(ck["wall_time_s"]),
            segments_s=[float(t) for t in ck.get("wall_time_segments_s", [ck["wall_time_s"]])],
            rollbacks=int(ck.get("rollbacks", 0)),
        )

    def _resample_if_needed(self, loop: _Loop) -> bool | None:
        """Sample a new trajectory when N_eff/N < ``ess_threshold`` (or the update rule asks for one).

        Returns whether it resampled, or None when the sampling blew up (or left a cell too thin
        for an observable's range, :class:`CellTooSmall`): the update rule has then rolled θ back
        and the update is to be tried again.

        Raises:
            RuntimeError: more than ``max_rollbacks`` blow-ups in a row.
        """
        if not self.rule.force_resample():
            check = reweight(self.potential, self.targets, loop.ensemble, self.settings.chunk_size, gradient=False)
            if check.ess_fraction >= self.settings.ess_threshold:
                return False
        try:
            result = self._sample(loop.md_start, first=False)
            ensemble = self._ensemble(result.trajectory, loop.n_samplings)
        except (SimulationBlowUp, CellTooSmall) as exc:
            loop.rollbacks += 1
            loop.rollbacks_this_update += 1
            if loop.rollbacks > self.settings.max_rollbacks:
                raise RuntimeError(f"sampling blew up {loop.rollbacks} times in a row; last: {exc}") from exc
            loop.ensemble, what = self.rule.roll_back(loop.good_state, loop.ensemble)
            _warn(f"update {loop.next_update}: {exc} — {what}")
            return None
        loop.rollbacks = 0
        loop.ensemble = ensemble
        loop.md_start = result.final
        loop.n_samplings += 1
        loop.good_state = copy.deepcopy(self.potential.state_dict())
        return True

    def _final_check(self, loop: _Loop) -> Evaluation:
        """Every target on a fresh trajectory with the final parameters.

        The last step was never tested on a trajectory of its own. If its check run blows up or
        leaves a cell too thin for an observable (:class:`CellTooSmall`), the parameters fall back
        to the update rule's choice (the last good trajectory's; Gauss–Newton: the last accepted
        point) and the check runs again with them; ``loop.final_note`` says so. A rule that keeps an
        accepted point (Gauss–Newton) also falls back when the final step made the loss worse.
        """
        compare = True
        try:
            result, after = self._check_run(loop, loop.md_start)
        except (SimulationBlowUp, CellTooSmall) as exc:
            state, what = self.rule.fallback_state(loop.good_state)
            loop.final_note = (f"the check run of the final parameters failed ({exc}); the parameters of the "
                               f"last {what} were kept and checked instead")
            _warn(loop.final_note)
            self.potential.load_state_dict(state)
            result, after = self._check_run(loop, loop.md_start)
            compare = False  # the fallback point is the accepted one: nothing to compare it with
        better = self.rule.better_accepted_state(after.loss) if compare else None
        if better is not None:
            # the last step was never tested: fall back to the last accepted parameters
            _warn(f"the last step raised the loss ({after.loss:.4g} > {better[1]:.4g}); "
                  "keeping the last accepted parameters")
            self.potential.load_state_dict(better[0])
            result, after = self._check_run(loop, result.final)
        path = self._path("trajectories", "final_check.pt")
        if path is not None:
            result.trajectory.save(path)
        return after

    def _check_run(self, loop: _Loop, start: Any) -> tuple[SampleResult, Evaluation]:
        """A fresh trajectory from ``start`` at the current parameters and every target's plain average on it."""
        result = self._sample(start, first=False)
        loop.n_samplings += 1
        return result, evaluate_targets(self.targets, result.trajectory, self.potential, self.settings.chunk_size)

    # -------------------------------------------------------------- output
    def _checkpoint(self, loop: _Loop, wall_time_s: float, session_s: float) -> None:
        """Everything to resume from; ``wall_time_s`` over all sessions, ``session_s`` of this one."""
        path = self.latest_checkpoint
        if path is None:
            return
        save_checkpoint(path, {
            "next_update": loop.next_update,
            "potential_state": self.potential.state_dict(),
            "reference_potential_state": loop.good_state,
            "generator_state": self.generator.get_state(),
            "history": [asdict(r) for r in loop.history],
            "before": evaluation_to_plain(loop.before),
            "trajectory_file": loop.ensemble.file,
            "md_state": state_to_plain(loop.md_start),
            "n_samplings": loop.n_samplings,
            "wall_time_s": wall_time_s,
            "wall_time_segments_s": loop.segments_s + [session_s],
            "rollbacks": loop.rollbacks,
            **self.rule.checkpoint_entries(),
            "dft_generator_state": self.dft_generator.get_state(),
            "dft_before": None if loop.dft_before is None else asdict(loop.dft_before),
            "config": self.config,
        })
        # only now that the checkpoint names the current trajectory may older ones go;
        # the first is kept as the "before" ensemble
        keep = {loop.ensemble.file, "trajectory_0000.pt"} | self.rule.kept_trajectory_files()
        for old in path.parent.parent.glob("trajectories/trajectory_*.pt"):
            if old.name not in keep:
                old.unlink()

    def _write_outputs(self, result: RefinementResult) -> None:
        assert self.run_dir is not None
        save_checkpoint(self.run_dir / "final_model.pt", {
            "potential_state": self.potential.state_dict(),
            "config": self.config,
        })
        plot_history(result.history, self.run_dir / "history.png",
                     final_loss=None if result.after is None else result.after.loss, final_parameters=result.parameters)
        evaluations = [("before", result.before)] + ([("after", result.after)] if result.after is not None else [])
        curves = target_curves(self.targets, evaluations)
        write_curves(curves, self.run_dir / "curves.json")
        plot_curves(curves, self.run_dir)
        summary = result.summary()
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))


def _warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)
