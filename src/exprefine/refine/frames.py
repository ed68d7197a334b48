"""Reweighting state points whose frames are spread over ranks (replica groups on several processes).

A state point's trajectory is the frames of its replica groups (:mod:`.state_points`). Each rank
holds the frames of the groups it sampled (:attr:`Ensemble.parts`); the rank that reweights the
state point also holds all of them (:attr:`Ensemble.trajectory`) with their parameter-independent
observable values. The per-frame passes, which cost a model evaluation per frame, run where the
frames are; only numbers per frame travel:

1. every rank computes its groups' energies U_i and parameter-dependent observable values O_i
   (Gauss–Newton: ∂U_i/∂θ instead); one all-gather brings them to the reweighting rank;
2. that rank evaluates the small graph — loss, N_eff, ∂L/∂U_i, ∂L/∂O_i
   (:func:`~exprefine.reweighting.reweighted_graph`) — or the linear model
   (:func:`.gauss_newton.linearize`);
3. with a gradient, a second all-gather returns each group's slice of ∂L/∂U_i and ∂L/∂O_i, every
   rank back-propagates its own groups, and the gradients are summed over ranks one row per group
   and then added in group order: the same numbers on any number of ranks.

With one replica group per state point (the default) every rank holds whole state points and
steps 1 and 3 exchange only what the rank that reweights a state point computed itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Sequence

import torch

from ..potentials.base import Potential
from ..reweighting import backpropagate_in_chunks, dynamic_values, frame_energies, reweighted_graph
from ..trajectory import Trajectory
from .collective import Collective
from .gauss_newton import LinearModel, linearize, per_frame_energy_gradients
from .state_points import Chain, StatePoint, chains
from .targets import total_loss


@dataclass
class Ensemble:
    """What this rank holds of the trajectory a state point's updates reweight.

    Attributes:
        trajectory: all the state point's frames, its groups joined — only on the rank that
            reweights it (None elsewhere).
        static: per-frame values of the parameter-independent observables on ``trajectory`` (None
            for those that depend on the parameters); empty where ``trajectory`` is None.
        file: the trajectory's file name in the state point's ``trajectories`` folder.
        parts: the frames of this rank's replica groups, by group index (``{0: trajectory}`` by
            default for a state point of one group).
    """

    trajectory: Trajectory | None
    static: list
    file: str | None
    parts: dict[int, Trajectory] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.trajectory is not None and not self.parts:
            self.parts = {0: self.trajectory}

    @property
    def reweighted_here(self) -> bool:
        """Whether this rank reweights the state point (holds all its frames)."""
        return self.trajectory is not None


#: the ensembles this rank takes part in, by state-point index
Ensembles = dict[int, Ensemble]


@dataclass
class PointEstimate:
    """What the reweighting of one state point gave at θ: its averages, loss and N_eff/N."""

    predictions: list[torch.Tensor]
    loss: float
    ess_fraction: float
    n_frames: int


@dataclass
class FrameValues:
    """Per-frame numbers of some frames at θ (float64, no graph).

    Attributes:
        energies_eV: [n_frames] potential energies.
        dynamic: per index of a parameter-dependent observable, its values [n_frames, ...].
        energy_gradients: [n_frames, n_parameters] ∂U_i/∂θ (Gauss–Newton only).
    """

    energies_eV: torch.Tensor
    dynamic: dict[int, torch.Tensor]
    energy_gradients: torch.Tensor | None = None


def flat_gradient(params: Sequence[torch.Tensor]) -> torch.Tensor:
    """[n_parameters] the parameters' .grad in float64 on the CPU (zeros where there is none)."""
    return torch.cat([torch.zeros(p.numel(), dtype=torch.float64) if p.grad is None
                      else p.grad.detach().reshape(-1).to(device="cpu", dtype=torch.float64) for p in params])


def local_frame_values(potential: Potential, points: Sequence[StatePoint], ensembles: Ensembles, chunk_size: int,
                       energy_gradients: bool = False) -> dict[Chain, FrameValues]:
    """The per-frame numbers of this rank's groups: energies and the parameter-dependent observables'
    values, or (``energy_gradients``) energies and ∂U_i/∂θ."""
    out: dict[Chain, FrameValues] = {}
    for k, ensemble in sorted(ensembles.items()):
        observables = [t.observable for t in points[k].targets]
        for g, trajectory in sorted(ensemble.parts.items()):
            energies = frame_energies(potential, trajectory, chunk_size)
            if energy_gradients:
                out[(k, g)] = FrameValues(energies, {}, per_frame_energy_gradients(potential, trajectory))
                continue
            dependent = [i for i, obs in enumerate(observables) if obs.depends_on_parameters]
            out[(k, g)] = FrameValues(energies, dynamic_values(observables, dependent, potential, trajectory,
                                                                chunk_size))
    return out


def gather_frame_values(collective: Collective, local: dict[Chain, FrameValues]) -> dict[Chain, FrameValues]:
    """This rank's per-frame numbers and every other rank's of groups > 0 (group 0 of a state point is
    always where it is reweighted), by chain."""
    merged = dict(local)
    if collective.world_size > 1:
        for part in collective.gather({c: v for c, v in local.items() if c[1] > 0}):
            merged.update(part)
    return merged


def joined_values(values: dict[Chain, FrameValues], point: StatePoint, index: int) -> FrameValues:
    """State point ``index``'s per-frame numbers, its groups' in group order (the frames of its trajectory)."""
    parts = [values[(index, g)] for g in range(point.replica_groups)]
    if len(parts) == 1:
        return parts[0]
    gradients = None if parts[0].energy_gradients is None else torch.cat([p.energy_gradients for p in parts])  # type: ignore[misc]
    return FrameValues(torch.cat([p.energies_eV for p in parts]),
                       {i: torch.cat([p.dynamic[i] for p in parts]) for i in parts[0].dynamic}, gradients)


def reweight_points(potential: Potential, points: Sequence[StatePoint], ensembles: Ensembles, chunk_size: int,
                    collective: Collective, gradient: bool
                    ) -> tuple[dict[int, PointEstimate], torch.Tensor | None, torch.Tensor | None]:
    """Reweight every state point at the current θ (called on every rank).

    Returns the estimates of the state points this rank reweights and, with ``gradient``, the
    gradient rows [n_chains, n_values] (one per replica group, in :func:`.state_points.chains` order,
    summed over ranks) and which parameters each row reached [n_chains, n_parameters] (1 or 0).
    The parameters' ``.grad`` are left unset.
    """
    values = gather_frame_values(collective, local_frame_values(potential, points, ensembles, chunk_size))
    estimates: dict[int, PointEstimate] = {}
    slices: dict[Chain, tuple[torch.Tensor, dict[int, torch.Tensor]]] = {}
    for k, ensemble in sorted(ensembles.items()):
        if ensemble.trajectory is None:
            continue
        point = points[k]
        frames = joined_values(values, point, k)
        graph = reweighted_graph(frames.energies_eV, ensemble.trajectory, [t.observable for t in point.targets],
                                 ensemble.static, frames.dynamic, partial(total_loss, list(point.targets)), gradient)
        estimates[k] = PointEstimate(graph.step.predictions, graph.step.loss, graph.step.ess_fraction,
                                     ensemble.trajectory.n_frames)
        if graph.dL_dU is not None:
            sizes = [values[(k, g)].energies_eV.numel() for g in range(point.replica_groups)]
            by_group = torch.split(graph.dL_dU, sizes)
            o_by_group = {i: torch.split(v, sizes) for i, v in graph.dL_dO.items()}
            for g in range(point.replica_groups):
                slices[(k, g)] = (by_group[g], {i: parts[g] for i, parts in o_by_group.items()})
    if not gradient:
        return estimates, None, None
    if collective.world_size > 1:
        for part in collective.gather({c: v for c, v in slices.items() if c[1] > 0}):
            slices.update(part)
    params = potential.trainable_parameters()
    order = chains(points)
    rows = torch.zeros(len(order), sum(p.numel() for p in params), dtype=torch.float64)
    reached = torch.zeros(len(order), len(params), dtype=torch.float64)
    for k, ensemble in sorted(ensembles.items()):
        observables = [t.observable for t in points[k].targets]
        for g, trajectory in sorted(ensemble.parts.items()):
            for p in params:
                p.grad = None
            d_u, d_o = slices[(k, g)]
            backpropagate_in_chunks(potential, trajectory, observables, d_u, d_o, chunk_size)
            row = order.index((k, g))
            rows[row] = flat_gradient(params)
            reached[row] = torch.tensor([0.0 if p.grad is None else 1.0 for p in params], dtype=torch.float64)
    for p in params:
        p.grad = None
    return estimates, collective.sum(rows), collective.sum(reached)


def linearize_points(potential: Potential, points: Sequence[StatePoint], ensembles: Ensembles, chunk_size: int,
                     collective: Collective) -> dict[int, LinearModel]:
    """The Gauss–Newton linear model of every state point this rank reweights (called on every rank):
    energies and ∂U_i/∂θ from the ranks that hold the frames, the rest where the state point is reweighted."""
    local = local_frame_values(potential, points, ensembles, chunk_size, energy_gradients=True)
    values = gather_frame_values(collective, local)
    models = {}
    for k, ensemble in sorted(ensembles.items()):
        if ensemble.trajectory is None:
            continue
        frames = joined_values(values, points[k], k)
        models[k] = linearize(potential, ensemble.trajectory, points[k].targets, ensemble.static, chunk_size,
                              energies_eV=frames.energies_eV, energy_gradients=frames.energy_gradients)
    return models
