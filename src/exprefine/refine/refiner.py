"""The DiffTRe refinement loop: sample → reweight for several updates → resample.

Each update: reweight the current trajectory to the current parameters θ; if the
effective sample size N_eff/N falls below ``ess_threshold`` sample a new trajectory
with θ, starting from the last MD state; let the update rule (:mod:`.update_rules`:
Adam or Gauss–Newton) evaluate the loss and decide its step; take the step; write a
log row and a checkpoint. A sampling that blows up (or leaves a cell too thin for an
observable) is handed to the rule, which rolls θ back; the update is then tried again.

Several state points (:mod:`.state_points`): each has its own trajectory, random stream and
N_eff/N, and only those below the threshold are sampled again; the loss is their sum. A state
point's replicas may run as several MD chains (replica groups), whose frames form its trajectory.
Under torchrun the chains are spread over the ranks (:mod:`.collective`): each rank samples its
chains, computes the per-frame energies and gradients of their frames at every update
(:mod:`.frames`) and evaluates the loss of the state points whose group 0 it samples; the update
rule sums over ranks, every rank takes the same step, and rank 0 alone writes logs, figures and
checkpoints (each rank writes the trajectories of the state points it reweights).
A run with one state point keeps the run directory's layout and checkpoint keys of earlier versions.
"""

from __future__ import annotations

import copy
import functools
import json
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import torch

from ..data.metrics import DFTErrors
from ..io.checkpoint import compact_state, full_state, load_checkpoint, save_checkpoint, state_to_plain
from ..observables.base import CellTooSmall
from ..potentials.base import Potential
from ..sampling import (
    MDState,
    SampleResult,
    SamplerSettings,
    SimulationBlowUp,
    run_key,
    sample,
    sample_in_segments,
    segment_steps_of,
)
from ..state import State
from ..trajectory import Trajectory
from .collective import Collective
from .curves import target_curves, write_curves
from .frames import reweight_points
from .fused import FusedDFT, held_out_errors
from .log import RunLog, update_line
from .plots import plot_curves, plot_history
from .prior import ParameterPrior
from .records import (
    Evaluation,
    RefinementResult,
    UpdateRecord,
    evaluate_targets,
    evaluation_from_plain,
    evaluation_to_plain,
    merge_evaluations,
)
from .run_checkpoint import ChainEntry, chain_entry, point_entries, point_entry, prune_trajectories, with_points
from .settings import RefinerSettings
from .state_points import (
    SINGLE,
    Chain,
    StatePoint,
    chain_owner,
    chains,
    check_names,
    check_start_trajectory,
    group_generator,
    group_start,
    join_groups,
    last_frames,
    point_dir,
    point_owner,
    qualified,
    split_groups,
)
from .targets import Target
from .update_rules import (
    AdamRule,
    Ensemble,
    Ensembles,
    GaussNewtonRule,
    Step,
    UpdateRule,
    gather_points,
    parameter_summary,
)


@dataclass
class _ChainLoop:
    """One of this rank's MD chains: where its MD continues and its random stream."""

    md_start: Any
    generator: torch.Generator


@dataclass
class _Sampled:
    """What sampling a set of state points gave: this rank's chains' results, the joined trajectories of the
    state points this rank reweights, and every failed state point's first message (the same on every rank)."""

    results: dict[Chain, SampleResult]
    trajectories: dict[int, Trajectory]
    failed: dict[int, str]

    def parts(self, k: int) -> dict[int, Trajectory]:
        """This rank's groups' trajectories of state point ``k``, by group."""
        return {g: r.trajectory for (i, g), r in sorted(self.results.items()) if i == k}


@dataclass
class _Loop:
    """What the update loop carries from one update to the next; the checkpoint stores all of it
    (with the update rule's own state). Lists run over all state points and are the same on every rank."""

    #: the current ensembles of the state points this rank samples a group of (whole where it reweights them)
    current: dict[int, Ensemble]
    #: this rank's MD chains
    chains: dict[Chain, _ChainLoop]
    #: per state point: the parameters of its current trajectory (what a blow-up rolls back to)
    good_states: list[dict]
    #: per state point: trajectories sampled so far
    n_samplings: list[int]
    before: list[Evaluation]
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

    def ensembles(self) -> Ensembles:
        return dict(self.current)


class Refiner:
    """Refine ``potential`` so that ensemble averages match ``targets``.

    Args:
        potential: the model; its trainable parameters are updated in place.
        targets: experimental targets (of the one state point; ignored with ``state_points``).
        sampler_settings: MD settings (ensemble, temperature, lengths, seed) of the one state point.
        start: initial configuration (replicas as several systems) of the one state point.
        settings: refinement settings.
        run_dir: where checkpoints, logs, trajectories and plots go (None: keep nothing).
        config: the resolved configuration stored in every checkpoint (plain data).
        learning_rates: optional step size per parameter (by identity) overriding
            ``settings.learning_rate``, e.g. meV-scale spline knots next to ln σ.
        dft: labelled frames for fused refinement (λ·L_DFT added at every Adam update) and
            for the held-out errors before/after.
        state_points: several state points instead of ``targets``/``sampler_settings``/``start``.
        collective: sums over the ranks of a distributed run (default: one process).
        priors: Gaussian priors on parameters, added to the loss (:mod:`.prior`).
    """

    def __init__(
        self,
        potential: Potential,
        targets: Sequence[Target],
        sampler_settings: SamplerSettings | None,
        start: State | None,
        settings: RefinerSettings,
        run_dir: str | Path | None = None,
        config: dict[str, Any] | None = None,
        learning_rates: dict[int, float] | None = None,
        dft: FusedDFT | None = None,
        state_points: Sequence[StatePoint] | None = None,
        collective: Collective | None = None,
        priors: Sequence[ParameterPrior] = (),
    ) -> None:
        if dft is not None and dft.weight > 0 and settings.optimizer == "gauss_newton":
            raise ValueError("fused DFT training needs optimizer adam (force residuals do not fit the "
                             "Gauss–Newton model of ensemble averages)")
        if state_points is None:
            if not targets:
                raise ValueError("at least one target is needed")
            names = [t.name for t in targets]
            if len(set(names)) != len(names):
                raise ValueError(f"target names must be unique, got {names}")
            if sampler_settings is None or start is None:
                raise ValueError("give sampler_settings and start (or state_points)")
            state_points = [StatePoint(SINGLE, list(targets), sampler_settings, start)]
        if not state_points:
            raise ValueError("at least one state point is needed")
        check_names(list(state_points))
        if not any(p.requires_grad for p in potential.parameters()):
            raise ValueError("the potential has no trainable parameters")
        self.potential = potential
        self.points = list(state_points)
        self.single = len(self.points) == 1
        self.targets = [t for p in self.points for t in p.targets]
        self.sampler_settings = self.points[0].sampler_settings
        self.start = self.points[0].start
        self.settings = settings
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.config = config or {}
        self.collective = collective or Collective()
        world, rank = self.collective.world_size, self.collective.rank
        self.local_indices = [k for k in range(len(self.points)) if point_owner(self.points, k, world) == rank]
        self.local_chains = [c for c in chains(self.points) if chain_owner(self.points, c, world) == rank]
        #: the state points this rank samples a group of
        self.member_points = sorted({k for k, _ in self.local_chains})
        self.dft = dft
        self.dft_generator = torch.Generator().manual_seed(int(self.sampler_settings.seed) + 1)
        self.rule: UpdateRule
        if settings.optimizer == "gauss_newton":
            self.rule = GaussNewtonRule(potential, self.points, settings.chunk_size, settings.gauss_newton,
                                        logged_learning_rate=settings.learning_rate, collective=self.collective,
                                        priors=priors)
        else:
            self.rule = AdamRule(potential, self.points, settings.chunk_size, settings.learning_rate,
                                 settings.learning_rate_decay, settings.adam_betas, learning_rates, dft,
                                 self.dft_generator, collective=self.collective, priors=priors)

    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        """The torch optimizer of the Adam rule (None for Gauss–Newton)."""
        return self.rule.optimizer if isinstance(self.rule, AdamRule) else None

    @property
    def writer(self) -> bool:
        """Whether this process writes logs, figures and checkpoints (rank 0)."""
        return self.collective.is_writer

    # --------------------------------------------------------------- paths
    def _path(self, *parts: str) -> Path | None:
        if self.run_dir is None:
            return None
        path = self.run_dir.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _point_path(self, k: int, *parts: str) -> Path | None:
        if self.run_dir is None:
            return None
        path = point_dir(self.run_dir, self.points[k], self.single).joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _segments_dir(self, k: int, group: int, start: Any, generator: torch.Generator) -> Path | None:
        """Where a chain's segmented MD run goes (None: sample in one piece). The folder is named by the
        parameters, start and random stream, so that a resumed run finds the MD it was doing and any
        other sampling gets a folder of its own."""
        if self.settings.segment_ps is None or self.run_dir is None:
            return None
        return self._point_path(k, "md_segments", f"group{group}_{run_key(self.potential, start, generator)}")

    def _drop_segments(self) -> None:
        """Delete this rank's chains' finished segmented runs (called when no sampling is under way: their
        frames are in a saved trajectory or spent)."""
        if self.settings.segment_ps is None or self.run_dir is None:
            return
        for k, g in self.local_chains:
            folder = point_dir(self.run_dir, self.points[k], self.single) / "md_segments"
            for run in folder.glob(f"group{g}_*"):
                shutil.rmtree(run, ignore_errors=True)

    @property
    def latest_checkpoint(self) -> Path | None:
        return self._path("checkpoints", "latest.pt")

    # ------------------------------------------------------------ sampling
    def _generator(self, chain: Chain) -> torch.Generator:
        point = self.points[chain[0]]
        return group_generator(int(point.sampler_settings.seed), chain[1], point.start.device)

    def _sample_chains(self, loop: _Loop, which: Sequence[int], starts: dict[Chain, Any], first: bool,
                       catch: bool = True) -> _Sampled:
        """Sample this rank's chains of the state points ``which`` from ``starts`` (with the chains' own
        random streams) and join every state point's groups on the rank that reweights it.

        With ``catch`` a blow-up or a cell too thin for an observable is recorded as the state point's
        failure (gathered over ranks); without it the exception propagates.
        """
        results: dict[Chain, SampleResult] = {}
        failures: dict[int, str] = {}
        shipped: dict[Chain, Trajectory] = {}
        for chain, start in starts.items():
            k = chain[0]
            if k not in which:
                continue
            try:
                result = self._sample(k, start, loop.chains[chain].generator, first, group=chain[1])
            except (SimulationBlowUp, CellTooSmall) as exc:
                if not catch:
                    raise
                failures.setdefault(k, str(exc))
                continue
            results[chain] = result
            if chain[1] > 0:  # group 0 is sampled where it is reweighted; the others travel
                shipped[chain] = result.trajectory
        failed: dict[int, str] = {}
        arrived: dict[Chain, Trajectory] = {}
        for part_failures, part_shipped in self.collective.gather((failures, shipped)):
            for k, message in part_failures.items():
                failed.setdefault(k, message)
            arrived.update(part_shipped)
        trajectories = {}
        for k in self.local_indices:
            if k in which and k not in failed:
                parts = [results[(k, 0)].trajectory] + [arrived[(k, g)] for g in range(1, self.points[k].replica_groups)]
                trajectories[k] = join_groups(self.points[k], parts)
        return _Sampled(results, trajectories, dict(sorted(failed.items())))

    def _sample(self, k: int, start: Any, generator: torch.Generator, first: bool, group: int = 0) -> SampleResult:
        """One chain's MD (state point ``k``, replica group ``group``) with the current parameters; with
        ``segment_ps`` and a run directory in resumable segments under ``md_segments/``."""
        point = self.points[k]
        settings = point.sampler_settings
        if not first:
            steps = point.resample_equilibration_steps
            settings = replace(settings, n_equilibration_steps=self.settings.resample_equilibration_steps
                               if steps is None else steps)
        if isinstance(start, MDState):
            # the forces of the last MD step belong to the previous parameters: recompute them
            out = self.potential.compute(start.state)
            assert out.forces_eV_per_A is not None
            start = replace(start, forces_eV_per_A=out.forces_eV_per_A, energy_eV=out.energy_eV, stress_eV_per_A3=None)
        lines = self.settings.progress_lines
        n_steps = settings.n_equilibration_steps + settings.n_production_steps
        if lines:  # without bars, a long MD run should not look like a hang
            print(f"MD of state point {point.name}: {n_steps} steps ({settings.n_equilibration_steps} "
                  f"equilibration)", file=sys.stderr, flush=True)
        work_dir = self._segments_dir(k, group, start, generator)
        if work_dir is None:
            result = sample(self.potential, start, settings, generator=generator, progress=self.settings.progress)
        else:
            assert self.settings.segment_ps is not None
            run = sample_in_segments(self.potential, start, settings, work_dir,
                                     segment_steps=segment_steps_of(settings, self.settings.segment_ps),
                                     progress=self.settings.progress, generator=generator,
                                     log=functools.partial(_segment_line, point.name) if lines else None)
            result = run.as_sample_result()
        if lines:
            print(f"MD of state point {point.name}: {result.n_steps} steps in {result.wall_time_s:.0f} s "
                  f"({result.n_steps / max(result.wall_time_s, 1e-9):.2f} steps/s)", file=sys.stderr, flush=True)
        return result

    def _ensemble(self, k: int, trajectory: Trajectory | None, parts: dict[int, Trajectory], index: int | None = None,
                  file: str | None = None) -> Ensemble:
        """What this rank holds of state point ``k``'s trajectory: all of it with its static observable values
        (``trajectory``, where it is reweighted; saved as trajectory ``index`` or known as ``file``) and its
        own groups' frames (``parts``)."""
        if index is not None and self.run_dir is not None:
            file = f"trajectory_{index:04d}.pt"
        if trajectory is None:
            return Ensemble(None, [], file, parts)
        static: list[torch.Tensor | None] = []
        for t in self.points[k].targets:
            if t.observable.depends_on_parameters:
                static.append(None)
            else:
                static.append(t.observable.evaluate(trajectory, None, self.settings.chunk_size).to(torch.float64))
        if index is not None:
            path = self._point_path(k, "trajectories", f"trajectory_{index:04d}.pt")
            if path is not None:
                trajectory.save(path)
        return Ensemble(trajectory, static, file, parts)

    def _load_ensemble(self, k: int, file: str) -> Ensemble:
        """State point ``k``'s trajectory file as this rank holds it (all of it where it is reweighted, its own
        groups' frames everywhere)."""
        path = self._point_path(k, "trajectories", file)
        assert path is not None, "a run without a run directory has no trajectory files"
        trajectory = Trajectory.load(path)
        groups = split_groups(self.points[k], trajectory)
        parts = {g: groups[g] for kk, g in self.local_chains if kk == k}
        return self._ensemble(k, trajectory if k in self.local_indices else None, parts, file=file)

    # ---------------------------------------------------------------- loop
    def run(self, resume: bool = False) -> RefinementResult:
        """Run (or, with ``resume``, continue from the latest checkpoint) the refinement."""
        t_start = time.perf_counter()
        log = RunLog(self.run_dir) if self.run_dir is not None and self.writer else None
        if resume:
            loop = self._resumed_loop()
            if log is not None:
                log.truncate(loop.next_update)
        else:
            if log is not None:
                log.reset()
            loop = self._fresh_loop()
        bar = None
        if self.settings.progress and self.writer and self.settings.n_updates > loop.next_update:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.settings.n_updates, initial=loop.next_update, desc="refine", unit="update")
        while loop.next_update < self.settings.n_updates:
            t0 = time.perf_counter()
            resampled = self._resample_if_needed(loop)
            if resampled is None:  # a sampling blew up and θ was rolled back: try again
                continue
            step, ensembles = self.rule.propose(loop.ensembles())
            loop.current.update(ensembles)
            record = self._record(loop, step, resampled, time.perf_counter() - t0)
            loop.rollbacks_this_update = 0
            self.rule.apply(step)
            loop.next_update += 1
            loop.history.append(record)
            if log is not None:
                log.append(record)
            self._checkpoint(loop, loop.elapsed_before_s + time.perf_counter() - t_start,
                             time.perf_counter() - t_start)
            if self.settings.progress_lines and self.writer:
                print(update_line(record, self.settings.n_updates, loop.elapsed_before_s + time.perf_counter() - t_start),
                      file=sys.stderr, flush=True)
            if bar is not None:
                bar.set_postfix(loss=f"{record.loss:.4g}", ess=f"{record.ess_fraction:.2f}")
                bar.update(1)
        if bar is not None:
            bar.close()

        after = self._final_check(loop) if self.settings.final_check else None
        session = time.perf_counter() - t_start
        names = [p.name for p in self.points]
        out = RefinementResult(history=loop.history, before=self._merged(loop.before),
                               after=None if after is None else self._merged(after),
                               wall_time_s=loop.elapsed_before_s + session,
                               n_samplings=sum(loop.n_samplings), run_dir=self.run_dir, dft_before=loop.dft_before,
                               dft_after=held_out_errors(self.potential, self.dft), final_check_note=loop.final_note,
                               wall_time_segments_s=loop.segments_s + [session],
                               parameters=parameter_summary(self.potential),
                               point_before={} if self.single else dict(zip(names, loop.before)),
                               point_after={} if self.single or after is None else dict(zip(names, after)))
        if self.run_dir is not None and self.writer:
            self._write_outputs(out)
        return out

    def _merged(self, evaluations: Sequence[Evaluation]) -> Evaluation:
        return merge_evaluations([p.name for p in self.points], evaluations, [p.targets for p in self.points])

    def _record(self, loop: _Loop, step: Step, resampled: list[bool], wall_time_s: float) -> UpdateRecord:
        target_loss, target_rmse = {}, {}
        for point, estimate in zip(self.points, step.points):
            for t, p in zip(point.targets, estimate.predictions):
                target_loss[qualified(point, t.name, self.single)] = float(t.loss(p))
                target_rmse[qualified(point, t.name, self.single)] = t.rmse(p)
        several = not self.single
        return UpdateRecord(
            update=loop.next_update, loss=step.loss, ess_fraction=step.ess_fraction, resampled=any(resampled),
            learning_rate=self.rule.learning_rate, wall_time_s=wall_time_s,
            n_frames=sum(p.n_frames for p in step.points), target_loss=target_loss, target_rmse=target_rmse,
            parameters=step.parameters, accepted=step.accepted, damping=self.rule.damping,
            step_spread_kT=step.spread_kT, dft_loss=step.dft_loss, rollbacks=loop.rollbacks_this_update,
            gradient_norm=step.gradient_norm, prior_loss=step.prior_loss,
            curvature_eigenvalues=step.curvature_eigenvalues,
            point_loss={p.name: e.loss for p, e in zip(self.points, step.points)} if several else {},
            point_ess_fraction={p.name: e.ess_fraction for p, e in zip(self.points, step.points)} if several else {},
            resampled_points=[p.name for p, r in zip(self.points, resampled) if r] if several else [],
        )

    def _fresh_loop(self) -> _Loop:
        """The first trajectory of every state point at the starting parameters, and the "before" evaluations."""
        n = len(self.points)
        loop = _Loop(
            current={},
            chains={c: _ChainLoop(group_start(self.points[c[0]], c[1]), self._generator(c)) for c in self.local_chains},
            good_states=[copy.deepcopy(self.potential.state_dict()) for _ in range(n)],
            n_samplings=[1] * n,
            before=[],
            dft_before=held_out_errors(self.potential, self.dft),
        )
        given = {k: self._start_trajectory(k) for k in range(n) if self.points[k].start_trajectory is not None}
        sampled = self._sample_chains(loop, [k for k in range(n) if k not in given],
                                      {c: chain.md_start for c, chain in loop.chains.items()}, first=True, catch=False)
        for chain, result in sampled.results.items():
            loop.chains[chain].md_start = result.final
        for chain in loop.chains:
            if chain[0] in given:
                loop.chains[chain].md_start = last_frames(given[chain[0]][chain[1]]).to(
                    dtype=self.points[chain[0]].start.dtype, device=self.points[chain[0]].start.device)
        before = {}
        for k in self.member_points:
            if k in given:
                trajectory = self.points[k].start_trajectory if k in self.local_indices else None
                parts = {g: given[k][g] for kk, g in self.local_chains if kk == k}
            else:
                trajectory, parts = sampled.trajectories.get(k), sampled.parts(k)
            loop.current[k] = self._ensemble(k, trajectory, parts, 0)
            if trajectory is not None:
                before[k] = evaluate_targets(self.points[k].targets, trajectory, self.potential,
                                             self.settings.chunk_size, values=loop.current[k].static)
        loop.before = gather_points(self.collective, before, n)
        return loop

    def _start_trajectory(self, k: int) -> list[Trajectory]:
        """State point ``k``'s given first trajectory (checked against the starting parameters), by replica group."""
        point = self.points[k]
        check_start_trajectory(point, self.potential)
        assert point.start_trajectory is not None
        if self.writer and (self.settings.progress or self.settings.progress_lines):
            print(f"state point {point.name}: first trajectory given ({point.start_trajectory.n_frames} frames), "
                  "not sampled", file=sys.stderr, flush=True)
        return split_groups(point, point.start_trajectory)

    def _resumed_loop(self) -> _Loop:
        """The loop as the latest checkpoint left it; parameters, update rule and random streams restored."""
        ckpt_path = self.latest_checkpoint
        if ckpt_path is None or not ckpt_path.exists():
            raise FileNotFoundError(f"nothing to resume: no checkpoint at {ckpt_path}")
        ck = load_checkpoint(ckpt_path)
        entries = point_entries(ck, [p.name for p in self.points], [p.replica_groups for p in self.points], ckpt_path)
        self.potential.load_state_dict(full_state(self.potential, ck["potential_state"], ckpt_path))
        if ck.get("dft_generator_state") is not None:
            self.dft_generator.set_state(ck["dft_generator_state"])
        chain_loops = {}
        for k, g in self.local_chains:
            stored = chain_entry(entries[k], g)
            generator = self._generator((k, g))
            generator.set_state(stored.generator_state)
            md_start = State(**stored.md_state).to(device=self.points[k].start.device)
            chain_loops[(k, g)] = _ChainLoop(md_start, generator)
        loop = _Loop(
            current={k: self._load_ensemble(k, entries[k]["trajectory_file"]) for k in self.member_points},
            chains=chain_loops,
            good_states=[full_state(self.potential, e["reference_potential_state"], ckpt_path) for e in entries],
            n_samplings=[int(e["n_samplings"]) for e in entries],
            before=[evaluation_from_plain(e["before"]) for e in entries],
            dft_before=None if ck.get("dft_before") is None else DFTErrors(**ck["dft_before"]),
            history=[UpdateRecord(**r) for r in ck["history"]],
            next_update=int(ck["next_update"]),
            elapsed_before_s=float(ck["wall_time_s"]),
            segments_s=[float(t) for t in ck.get("wall_time_segments_s", [ck["wall_time_s"]])],
            rollbacks=int(ck.get("rollbacks", 0)),
        )
        self.rule.restore(ck, loop.ensembles(), self._load_ensemble)
        return loop

    def _resample_if_needed(self, loop: _Loop) -> list[bool] | None:
        """Sample new trajectories of the state points whose N_eff/N < ``ess_threshold`` (all of them when
        the update rule asks for it).

        Returns per state point whether it was sampled anew, or None when a sampling blew up (or left
        a cell too thin for an observable's range, :class:`CellTooSmall`): the update rule has then
        rolled θ back and the update is to be tried again.

        Raises:
            RuntimeError: more than ``max_rollbacks`` blow-ups in a row.
        """
        n = len(self.points)
        if self.rule.force_resample():
            need = [True] * n
        else:
            ess = torch.zeros(n, dtype=torch.float64)
            estimates, _, _ = reweight_points(self.potential, self.points, loop.current, self.settings.chunk_size,
                                              self.collective, gradient=False)
            for k, estimate in estimates.items():
                ess[k] = estimate.ess_fraction
            ess = self.collective.sum(ess)
            need = [float(ess[k]) < self.settings.ess_threshold for k in range(n)]
        if not any(need):
            return need
        which = [k for k in range(n) if need[k]]
        sampled = self._sample_chains(loop, which, {c: chain.md_start for c, chain in loop.chains.items()}, first=False)
        failed = sampled.failed
        ensembles, failures = {}, {}
        for k in self.member_points:
            if k not in which or k in failed:
                continue
            try:
                ensembles[k] = self._ensemble(k, sampled.trajectories.get(k), sampled.parts(k), loop.n_samplings[k])
            except CellTooSmall as exc:
                failures[k] = str(exc)
        for part in self.collective.gather(failures):
            for k, message in part.items():
                failed.setdefault(k, message)
        for k, ensemble in ensembles.items():
            if k not in failed:
                loop.current[k] = ensemble
        for chain, result in sampled.results.items():
            if chain[0] not in failed:
                loop.chains[chain].md_start = result.final
        for k in range(n):
            if need[k] and k not in failed:
                loop.n_samplings[k] += 1
                loop.good_states[k] = copy.deepcopy(self.potential.state_dict())
        if failed:
            loop.rollbacks += 1
            loop.rollbacks_this_update += 1
            first = min(failed)
            where = "" if self.single else f"state point {self.points[first].name}: "
            if loop.rollbacks > self.settings.max_rollbacks:
                raise RuntimeError(f"sampling blew up {loop.rollbacks} times in a row; last: {where}{failed[first]}")
            ensembles, what = self.rule.roll_back(loop.good_states[first], loop.ensembles())
            loop.current.update(ensembles)
            if self.writer:
                _warn(f"update {loop.next_update}: {where}{failed[first]} — {what}")
            return None
        loop.rollbacks = 0
        return need

    def _final_check(self, loop: _Loop) -> list[Evaluation]:
        """Every target on fresh trajectories with the final parameters.

        The last step was never tested on a trajectory of its own. If a check run blows up or
        leaves a cell too thin for an observable (:class:`CellTooSmall`), the parameters fall back
        to the update rule's choice (the last good trajectory's; Gauss–Newton: the last accepted
        point) and the checks run again with them; ``loop.final_note`` says so. A rule that keeps an
        accepted point (Gauss–Newton) also falls back when the final step made the loss worse.
        """
        compare = True
        starts = {c: chain.md_start for c, chain in loop.chains.items()}
        sampled, after, failure = self._check_runs(loop, starts)
        if after is None:
            state, what = self.rule.fallback_state(loop.good_states[0])
            loop.final_note = (f"the check run of the final parameters failed ({failure}); the parameters of the "
                               f"last {what} were kept and checked instead")
            if self.writer:
                _warn(loop.final_note)
            self.potential.load_state_dict(state)
            sampled, after, failure = self._check_runs(loop, starts)
            if after is None:
                raise SimulationBlowUp(f"the check run of the fallback parameters failed too: {failure}")
            compare = False  # the fallback point is the accepted one: nothing to compare it with
        total = float(sum(ev.loss for ev in after)) + (self.rule.prior_loss() or 0.0)
        better = self.rule.better_accepted_state(total) if compare else None
        if better is not None and _same_parameters(better[0], self.potential.state_dict()):
            # the check ran at the accepted parameters themselves (the last step was rejected): its
            # higher loss is the noise of a fresh trajectory, and a second run would measure the same
            better = None
        if better is not None:
            # the last step was never tested: fall back to the last accepted parameters
            if self.writer:
                _warn(f"the last step raised the loss ({total:.4g} > {better[1]:.4g}); "
                      "keeping the last accepted parameters")
            self.potential.load_state_dict(better[0])
            sampled, after, failure = self._check_runs(loop, {c: r.final for c, r in sampled.results.items()})
            if after is None:
                raise SimulationBlowUp(f"the check run of the last accepted parameters failed: {failure}")
        for k, trajectory in sampled.trajectories.items():
            path = self._point_path(k, "trajectories", "final_check.pt")
            if path is not None:
                trajectory.save(path)
        self.collective.barrier()
        self._drop_segments()
        return after

    def _check_runs(self, loop: _Loop, starts: dict[Chain, Any]
                    ) -> tuple[_Sampled, list[Evaluation] | None, str | None]:
        """Fresh trajectories of every state point at the current parameters (this rank's chains), and every
        state point's plain averages (None, with the first failure's message, when a run blew up on any rank)."""
        sampled = self._sample_chains(loop, range(len(self.points)), starts, first=False)
        outcome: dict[int, Evaluation | str] = {k: m for k, m in sampled.failed.items() if k in self.local_indices}
        for k, trajectory in sampled.trajectories.items():
            try:
                outcome[k] = evaluate_targets(self.points[k].targets, trajectory, self.potential,
                                              self.settings.chunk_size)
            except CellTooSmall as exc:
                outcome[k] = str(exc)
        everything = gather_points(self.collective, outcome, len(self.points))
        for k, value in enumerate(everything):
            if not isinstance(value, str):
                loop.n_samplings[k] += 1
        failures = [(k, v) for k, v in enumerate(everything) if isinstance(v, str)]
        if failures:
            k, message = failures[0]
            return sampled, None, message if self.single else f"state point {self.points[k].name}: {message}"
        return sampled, [v for v in everything if isinstance(v, Evaluation)], None

    # -------------------------------------------------------------- output
    def _checkpoint(self, loop: _Loop, wall_time_s: float, session_s: float) -> None:
        """Everything to resume from; ``wall_time_s`` over all sessions, ``session_s`` of this one.

        Called on every rank: the state points' MD states and random streams are gathered, rank 0
        writes, and only after that do the ranks delete trajectories the checkpoint no longer names.
        """
        path = self.latest_checkpoint
        if path is None:
            return
        local = {c: ChainEntry(state_to_plain(chain.md_start), chain.generator.get_state())
                 for c, chain in loop.chains.items()}
        gathered: dict[Chain, ChainEntry] = {}
        for part in self.collective.gather(local):
            gathered.update(part)
        files = gather_points(self.collective, {k: e.file for k, e in loop.current.items() if e.reweighted_here},
                              len(self.points))
        rule_entries = self.rule.checkpoint_entries()
        if self.writer:
            points = [point_entry(point.name, [gathered[(k, g)] for g in range(point.replica_groups)], files[k],
                                  loop.n_samplings[k], compact_state(self.potential, loop.good_states[k]),
                                  evaluation_to_plain(loop.before[k]))
                      for k, point in enumerate(self.points)]
            save_checkpoint(path, with_points({
                "next_update": loop.next_update,
                "potential_state": compact_state(self.potential, self.potential.state_dict()),
                "history": [asdict(r) for r in loop.history],
                "n_samplings": sum(loop.n_samplings),
                "wall_time_s": wall_time_s,
                "wall_time_segments_s": loop.segments_s + [session_s],
                "rollbacks": loop.rollbacks,
                **rule_entries,
                "dft_generator_state": self.dft_generator.get_state(),
                "dft_before": None if loop.dft_before is None else asdict(loop.dft_before),
                "config": self.config,
            }, points))
        self.collective.barrier()
        # only now that the checkpoint names the current trajectories may older ones go;
        # the first is kept as the "before" ensemble
        kept = self.rule.kept_trajectory_files()
        for k, ensemble in loop.current.items():
            if not ensemble.reweighted_here:
                continue
            folder = self._point_path(k, "trajectories")
            assert folder is not None
            prune_trajectories(folder, {ensemble.file, "trajectory_0000.pt", kept.get(k)})
        self._drop_segments()  # no sampling is under way: the checkpoint names its frames

    def _write_outputs(self, result: RefinementResult) -> None:
        assert self.run_dir is not None
        save_checkpoint(self.run_dir / "final_model.pt", {
            "potential_state": self.potential.state_dict(),
            "config": self.config,
        })
        plot_history(result.history, self.run_dir / "history.png",
                     final_loss=None if result.after is None else result.after.loss, final_parameters=result.parameters)
        for k, point in enumerate(self.points):
            if self.single:
                before, after = result.before, result.after
            else:
                before, after = result.point_before[point.name], result.point_after.get(point.name)
            evaluations = [("before", before)] + ([("after", after)] if after is not None else [])
            folder = point_dir(self.run_dir, point, self.single)
            folder.mkdir(parents=True, exist_ok=True)
            curves = target_curves(point.targets, evaluations)
            write_curves(curves, folder / "curves.json")
            plot_curves(curves, folder)
            if not self.single:
                (folder / "summary.json").write_text(json.dumps(_point_summary(point, result), indent=2))
        summary = result.summary()
        if not self.single:
            summary["state_points"] = [p.name for p in self.points]
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))


def _point_summary(point: StatePoint, result: RefinementResult) -> dict[str, Any]:
    """One state point's part of a run: losses and RMSEs before/after, scalar targets, N_eff/N per update."""
    before = result.point_before[point.name]
    after = result.point_after.get(point.name)
    return {
        "name": point.name,
        "temperature_K": point.sampler_settings.temperature_K,
        "pressure_bar": None if point.sampler_settings.barostat is None else point.sampler_settings.barostat.pressure_bar,
        "loss_before": before.loss,
        "loss_after": None if after is None else after.loss,
        "rmse_before": before.rmse,
        "rmse_after": None if after is None else after.rmse,
        "scalar_targets_before": before.scalars(),
        "scalar_targets_after": None if after is None else after.scalars(),
        "ess_fraction_per_update": [r.point_ess_fraction.get(point.name) for r in result.history],
        "resampled_updates": [r.update for r in result.history if point.name in r.resampled_points],
    }


def _same_parameters(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two state dicts hold the same tensors (same keys, equal values)."""
    return a.keys() == b.keys() and all(torch.equal(a[k].detach().cpu(), b[k].detach().cpu()) for k in a)


def _warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def _segment_line(name: str, line: str) -> None:
    """One finished MD segment of state point ``name``, as a plain line on stderr."""
    print(f"MD of state point {name}: {line}", file=sys.stderr, flush=True)
