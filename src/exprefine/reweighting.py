"""Boltzmann reweighting of stored frames to new parameters, in float64, and its chunked gradient.

For frames x_i sampled with θ_ref in the canonical ensemble,

    w_i(θ) = exp(−β[U_θ(x_i) − U_ref(x_i)]) / Σ_j exp(−β[U_θ(x_j) − U_ref(x_j)])

and ⟨O⟩_θ ≈ Σ_i w_i O_i(θ). In NPT the enthalpy replaces the energy; the PV term
cancels in the difference when U_θ and U_ref are evaluated on the same frames, so
only the potential energies enter here.

The effective sample size is the entropy form N_eff = exp(−Σ_i w_i ln w_i) used by
Thaler & Zavadlav (2021); N_eff/N = 1 at θ = θ_ref.

Gradient: the loss L depends on θ through the energies U_i(θ) (weights) and, for
some observables, through O_i(θ). Energies of all frames are computed first without
a graph (:func:`frame_energies`); L and ∂L/∂U_i, ∂L/∂O_i come from a small graph over
those numbers (:func:`reweighted_graph`); then Σ_i ∂L/∂U_i · U_i(θ) + ∂L/∂O_i · O_i(θ) is
back-propagated chunk by chunk (:func:`backpropagate_in_chunks`), so memory is bounded by
the chunk size, not by the number of frames. The three phases are separate so that the
frames of one ensemble may sit on several processes: only the small graph needs all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .observables.base import Observable
from .potentials.base import Potential
from .trajectory import Trajectory


def log_weights(energies_eV: torch.Tensor, reference_energies_eV: torch.Tensor, kT_eV: float) -> torch.Tensor:
    """[n_frames] normalised log-weights ln w_i in float64 (Σ exp = 1).

    Stable for any energy difference: the log-sum-exp removes the largest term
    before exponentiation, so differences of 10⁴ kT neither overflow nor give NaN.
    """
    if kT_eV <= 0:
        raise ValueError(f"kT must be positive, got {kT_eV} eV")
    a = -(energies_eV.to(torch.float64) - reference_energies_eV.to(torch.float64)) / kT_eV
    return a - torch.logsumexp(a, dim=0)


def effective_sample_size(log_w: torch.Tensor) -> float:
    """N_eff = exp(−Σ w ln w) (entropy form) for normalised log-weights; between 1 and N."""
    w = log_w.exp()
    entropy = -(w * torch.where(w > 0, log_w, torch.zeros_like(log_w))).sum()
    return float(entropy.exp())


def frame_energies(potential: Potential, trajectory: Trajectory, chunk_size: int = 32) -> torch.Tensor:
    """[n_frames] float64 potential energies of the stored frames under the current parameters (no graph)."""
    parts = []
    with torch.no_grad():
        for sl in trajectory.chunks(chunk_size):
            state = trajectory.as_state(sl).to(dtype=_potential_dtype(potential, trajectory))
            parts.append(potential.energy(state).to(torch.float64))
    return torch.cat(parts)


@dataclass
class ReweightedStep:
    """Result of one reweighted loss evaluation (gradients are left in the parameters' .grad).

    Attributes:
        loss: the scalar loss at the current parameters.
        predictions: reweighted ensemble average of each observable (detached).
        ess: effective sample size N_eff.
        ess_fraction: N_eff / n_frames.
        log_weights: [n_frames] normalised log-weights (float64).
    """

    loss: float
    predictions: list[torch.Tensor]
    ess: float
    ess_fraction: float
    log_weights: torch.Tensor


@dataclass
class ReweightedGraph:
    """The small graph of one reweighting: the loss from the frames' energies and values, and its
    derivatives with respect to them (what the chunked backward pass needs).

    Attributes:
        step: loss, predictions, N_eff and log-weights.
        dL_dU: [n_frames] ∂L/∂U_i (None without gradient).
        dL_dO: per index of a parameter-dependent observable, [n_frames, ...] ∂L/∂O_i.
    """

    step: ReweightedStep
    dL_dU: torch.Tensor | None
    dL_dO: dict[int, torch.Tensor]


def dynamic_values(observables: Sequence[Observable], indices: Sequence[int], potential: Potential,
                   trajectory: Trajectory, chunk_size: int = 32) -> dict[int, torch.Tensor]:
    """Per-frame values (float64, no graph) at the current parameters of the observables at ``indices``
    (those that depend on the parameters), by observable index."""
    out = {}
    with torch.no_grad():
        for k in indices:
            out[k] = observables[k].evaluate(trajectory, potential, chunk_size).to(torch.float64)
    return out


def reweighted_graph(
    energies_eV: torch.Tensor,
    trajectory: Trajectory,
    observables: Sequence[Observable],
    static_values: Sequence[torch.Tensor | None],
    dynamic: dict[int, torch.Tensor],
    loss_fn: Callable[[list[torch.Tensor]], torch.Tensor],
    compute_gradient: bool = True,
) -> ReweightedGraph:
    """The loss of the frames of ``trajectory`` at energies ``energies_eV`` (float64 [n_frames], no graph)
    and ∂L/∂U_i, ∂L/∂O_i; ``dynamic`` holds the per-frame values of the parameter-dependent observables."""
    if len(observables) != len(static_values):
        raise ValueError("one static value (or None) per observable is required")
    u_leaf = energies_eV.detach().clone().requires_grad_(compute_gradient)
    o_leaves = {k: v.clone().requires_grad_(compute_gradient) for k, v in dynamic.items()}
    with torch.enable_grad():
        lw = log_weights(u_leaf, trajectory.energies_eV, trajectory.kT_eV)
        w = lw.exp()
        predictions = []
        for k, obs in enumerate(observables):
            values = o_leaves[k] if k in o_leaves else static_values[k].to(torch.float64)  # type: ignore[union-attr]
            predictions.append(obs.reduce(values, w))
        loss = loss_fn(predictions)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss is not finite ({float(loss)}); check the targets and the potential")
        if compute_gradient:
            loss.backward()

    lw = lw.detach()
    ess = effective_sample_size(lw)
    step = ReweightedStep(loss=float(loss.detach()), predictions=[p.detach() for p in predictions], ess=ess,
                          ess_fraction=ess / trajectory.n_frames, log_weights=lw)
    if not compute_gradient:
        return ReweightedGraph(step, None, {})
    assert u_leaf.grad is not None, "the loss does not depend on the frame energies"
    return ReweightedGraph(step, u_leaf.grad, {k: leaf.grad for k, leaf in o_leaves.items() if leaf.grad is not None})


def reweighted_loss_and_gradient(
    potential: Potential,
    trajectory: Trajectory,
    observables: Sequence[Observable],
    static_values: Sequence[torch.Tensor | None],
    loss_fn: Callable[[list[torch.Tensor]], torch.Tensor],
    *,
    chunk_size: int = 32,
    compute_gradient: bool = True,
) -> ReweightedStep:
    """Reweight ``trajectory`` to the current parameters, evaluate the loss and accumulate ∂L/∂θ.

    Args:
        potential: the model being refined; its parameters receive ``.grad`` (accumulated:
            zero them before).
        trajectory: frames sampled with θ_ref, with U_ref per frame.
        observables: one per target.
        static_values: per-frame values [n_frames, ...] of the parameter-independent
            observables (computed once per trajectory); None for observables with
            ``depends_on_parameters``, which are recomputed here.
        loss_fn: maps the list of reweighted averages (float64) to a scalar loss.
        chunk_size: frames per backward pass; bounds the memory.
        compute_gradient: if False only the loss, predictions and ESS are computed.
    """
    if len(observables) != len(static_values):
        raise ValueError("one static value (or None) per observable is required")
    energies = frame_energies(potential, trajectory, chunk_size)
    dynamic = dynamic_values(observables, [k for k, v in enumerate(static_values) if v is None], potential,
                             trajectory, chunk_size)
    graph = reweighted_graph(energies, trajectory, observables, static_values, dynamic, loss_fn, compute_gradient)
    if graph.dL_dU is not None:
        backpropagate_in_chunks(potential, trajectory, observables, graph.dL_dU, graph.dL_dO, chunk_size)
    return graph.step


def backpropagate_in_chunks(
    potential: Potential,
    trajectory: Trajectory,
    observables: Sequence[Observable],
    dL_dU: torch.Tensor,
    dL_dO: dict[int, torch.Tensor],
    chunk_size: int,
) -> None:
    """Accumulate ∂L/∂θ = Σ_i ∂L/∂U_i ∂U_i/∂θ + ∂L/∂O_i ∂O_i/∂θ chunk by chunk (in the parameters' .grad)."""
    dtype = _potential_dtype(potential, trajectory)
    # only the parameters: models that set requires_grad on their input positions (MACE)
    # would otherwise also accumulate a gradient into a throw-away copy of the positions
    params = potential.trainable_parameters()
    for sl in trajectory.chunks(chunk_size):
        state = trajectory.as_state(sl).to(dtype=dtype)
        with torch.enable_grad():
            surrogate = (dL_dU[sl] * potential.energy(state).to(torch.float64)).sum()
            for k, grad_o in dL_dO.items():
                values = observables[k].per_frame(state, potential).to(torch.float64)
                surrogate = surrogate + (grad_o[sl] * values).sum()
            if surrogate.requires_grad:
                surrogate.backward(inputs=params)


def _potential_dtype(potential: Potential, trajectory: Trajectory) -> torch.dtype:
    for p in potential.parameters():
        if p.is_floating_point():
            return p.dtype
    return trajectory.positions_A.dtype
