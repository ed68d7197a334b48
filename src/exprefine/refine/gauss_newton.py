"""Levenberg–Marquardt (damped Gauss–Newton) steps on reweighted ensemble averages.

For a few parameters (Lennard-Jones σ, ε; a spline of a few dozen knots) the loss
L(θ) = Σ_k γ_k/n_k ‖⟨O_k⟩_θ − y_k‖² is a least-squares problem, and the whole
Jacobian of the reweighted averages is cheap. With w_i the normalised weights,

    ∂⟨O⟩/∂θ = Σ_i w_i ∂O_i/∂θ − β Σ_i w_i (O_i − ⟨O⟩) ∂U_i/∂θ,

the covariance form of the DiffTRe gradient, one row per grid point. A damped
Gauss–Newton step solves

    (JᵀJ + λ diag JᵀJ) Δθ = −Jᵀ r,

which is invariant to how each parameter is scaled (ln σ next to spline knots in
eV) and follows curved, narrow valleys where first-order steps zig-zag. Its
length is capped in the currency of reweighting: the spread over frames of the
energy change, std_i(β ∂U_i/∂θ · Δθ) ≤ ``max_step_kT``; a spread s costs about a
factor exp(−s²) in effective sample size. Whether a step is kept is decided by
the refiner (Levenberg–Marquardt acceptance: the loss at the new parameters must
not exceed the loss at the last accepted ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..observables.base import Observable
from ..potentials.base import Potential
from ..reweighting import _potential_dtype, effective_sample_size, frame_energies, log_weights
from ..trajectory import Trajectory
from .targets import Target, total_loss


@dataclass
class GaussNewtonSettings:
    """Damping and step-length control of the Levenberg–Marquardt refiner.

    Attributes:
        initial_damping: λ of the first step (relative to diag JᵀJ).
        damping_increase: factor on λ after a rejected step (or a blown-up sampling).
        damping_decrease: factor on λ after an accepted step.
        min_damping: floor of λ.
        max_step_kT: cap on std_i(β ΔU_i), the spread of the predicted energy change
            over the frames (dimensionless).
    """

    initial_damping: float = 1e-2
    damping_increase: float = 4.0
    damping_decrease: float = 1.0 / 3.0
    min_damping: float = 1e-4
    max_step_kT: float = 2.0

    def __post_init__(self) -> None:
        if self.initial_damping < 0 or self.min_damping < 0:
            raise ValueError("damping values must be ≥ 0")
        if self.damping_increase <= 1.0:
            raise ValueError(f"damping_increase must be > 1, got {self.damping_increase}")
        if not 0.0 < self.damping_decrease <= 1.0:
            raise ValueError(f"damping_decrease must be in (0, 1], got {self.damping_decrease}")
        if self.max_step_kT <= 0:
            raise ValueError(f"max_step_kT must be positive, got {self.max_step_kT}")


@dataclass
class LinearModel:
    """Reweighted averages and their Jacobian at the current parameters, from one trajectory.

    Attributes:
        predictions: ⟨O_k⟩ per target (float64, the observable's shape).
        jacobians: ∂⟨O_k⟩/∂θ per target, [*shape_k, n_parameters] (float64).
        energy_gradients: [n_frames, n_parameters] ∂U_i/∂θ in eV per parameter unit.
        weights: [n_frames] normalised weights w_i (float64).
        beta_per_eV: 1/kT of the trajectory.
        loss: total loss at the current parameters.
        ess_fraction: N_eff / n_frames.
    """

    predictions: list[torch.Tensor]
    jacobians: list[torch.Tensor]
    energy_gradients: torch.Tensor
    weights: torch.Tensor
    beta_per_eV: float
    loss: float
    ess_fraction: float

    def spread(self, step: torch.Tensor) -> float:
        """std_i(β ∂U_i/∂θ · Δθ) over the weighted frames: the spread of the predicted energy change."""
        return _energy_spread(self, step)

    def energy_covariance(self) -> torch.Tensor:
        """[n_parameters, n_parameters] C = β² Cov_w(∂U/∂θ), so that the spread of a step Δθ is √(Δθᵀ C Δθ)."""
        g = self.energy_gradients
        centred = g - self.weights @ g
        return self.beta_per_eV ** 2 * (centred * self.weights[:, None]).T @ centred


@dataclass
class StackedModel:
    """The linear models of several state points as one least-squares problem.

    Attributes:
        predictions, jacobians: those of every target of every state point, in state-point order
            (float64; jacobians [*shape_k, n_parameters]).
        energy_covariances: per state point, [n_parameters, n_parameters] β² Cov_w(∂U/∂θ).
        point_losses: the loss of each state point.
        ess_fractions: N_eff/N of each state point.
        n_frames: frames of each state point's trajectory.
    """

    predictions: list[torch.Tensor]
    jacobians: list[torch.Tensor]
    energy_covariances: list[torch.Tensor]
    point_losses: list[float]
    ess_fractions: list[float]
    n_frames: list[int]

    @property
    def loss(self) -> float:
        """The total loss: the state points' losses added in their order."""
        return float(sum(self.point_losses))

    @property
    def n_parameters(self) -> int:
        return int(self.energy_covariances[0].shape[0])

    def spread(self, step: torch.Tensor) -> float:
        """The largest spread √(Δθᵀ C Δθ) over the state points (each caps its own N_eff)."""
        return max(float((step @ c @ step).clamp_min(0.0).sqrt()) for c in self.energy_covariances)


def per_frame_energy_gradients(potential: Potential, trajectory: Trajectory) -> torch.Tensor:
    """[n_frames, n_parameters] ∂U_i/∂θ (float64): one forward and backward pass per frame.

    Frame by frame rather than in chunks: a backward pass through a chunk's graph costs
    the whole chunk even when only one frame's energy is differentiated.
    """
    params = potential.trainable_parameters()
    dtype = _potential_dtype(potential, trajectory)
    rows = []
    for sl in trajectory.chunks(1):
        state = trajectory.as_state(sl).to(dtype=dtype)
        with torch.enable_grad():
            energy = potential.energy(state).sum()
            rows.append(_flatten(torch.autograd.grad(energy, params, allow_unused=True), params))
    return torch.stack(rows)


def _flatten(grads: Sequence[torch.Tensor | None], params: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([
        (torch.zeros(p.numel(), dtype=torch.float64) if g is None else g.detach().reshape(-1).to(torch.float64))
        for g, p in zip(grads, params)
    ])


def _direct_jacobian(observable: Observable, trajectory: Trajectory, potential: Potential,
                     weights: torch.Tensor, chunk_size: int, coefficients: torch.Tensor | None = None) -> torch.Tensor:
    """Σ_i w_i ∂O_i/∂θ for an observable that depends on θ: [n_out, n_parameters].

    With ``coefficients`` [n_out, n_frames, n_values] (∂prediction/∂O_i of a nonlinear reduction,
    per-frame values flattened) the sum is Σ_i Σ_c coefficients[:, i, c] ∂O_ic/∂θ instead.
    """
    params = potential.trainable_parameters()
    dtype = _potential_dtype(potential, trajectory)
    total = None
    for sl in trajectory.chunks(chunk_size):
        state = trajectory.as_state(sl).to(dtype=dtype)
        with torch.enable_grad():
            values = observable.per_frame(state, potential).to(torch.float64)
            flat = values.reshape(values.shape[0], -1)
            if coefficients is None:
                weighted = torch.tensordot(weights[sl], flat, dims=([0], [0]))
            else:
                weighted = torch.einsum("mic,ic->m", coefficients[:, sl], flat)
            rows = []
            for m in range(weighted.shape[0]):
                grads = torch.autograd.grad(weighted[m], params, retain_graph=m + 1 < weighted.shape[0],
                                            allow_unused=True)
                rows.append(_flatten(grads, params))
        block = torch.stack(rows)
        total = block if total is None else total + block
    assert total is not None
    return total


def linearize(
    potential: Potential,
    trajectory: Trajectory,
    targets: Sequence[Target],
    static_values: Sequence[torch.Tensor | None],
    chunk_size: int = 32,
    energies_eV: torch.Tensor | None = None,
    energy_gradients: torch.Tensor | None = None,
) -> LinearModel:
    """Reweight ``trajectory`` to the current θ and return the averages with their Jacobian.

    Args:
        static_values: per-frame values [n_frames, ...] of parameter-independent observables
            (None for observables with ``depends_on_parameters``, which are recomputed).
        energies_eV, energy_gradients: the frames' energies [n_frames] and ∂U_i/∂θ
            [n_frames, n_parameters] at θ when they were computed elsewhere (by the processes
            that hold the frames); computed here when None.
    """
    energies = frame_energies(potential, trajectory, chunk_size) if energies_eV is None else energies_eV
    lw = log_weights(energies, trajectory.energies_eV, trajectory.kT_eV)
    w = lw.exp()
    beta = 1.0 / trajectory.kT_eV
    grad_u = per_frame_energy_gradients(potential, trajectory) if energy_gradients is None else energy_gradients
    predictions, jacobians = [], []
    for target, values in zip(targets, static_values):
        obs = target.observable
        if values is None:
            with torch.no_grad():
                values = obs.evaluate(trajectory, potential, chunk_size)
        values = values.to(torch.float64)
        if type(obs).reduce is Observable.reduce:
            # the weighted mean: the covariance formula directly
            flat = values.reshape(values.shape[0], -1)
            mean = w @ flat
            prediction = mean.reshape(values.shape[1:])
            jac = -beta * ((flat - mean) * w[:, None]).T @ grad_u
        else:
            # a nonlinear reduction (e.g. a peak position): chain rule through ∂w_i/∂θ = −β w_i (G_i − Ḡ)
            prediction = obs.reduce(values, w).detach()
            d_pred_d_w = torch.autograd.functional.jacobian(lambda ww: obs.reduce(values, ww).reshape(-1), w)
            d_w = -beta * w[:, None] * (grad_u - w @ grad_u)
            jac = d_pred_d_w.reshape(-1, w.shape[0]) @ d_w
            if obs.depends_on_parameters:
                # fluctuation formulas: the prediction depends on θ also through the moments of O_i(θ)
                d_pred_d_o = torch.autograd.functional.jacobian(lambda vv: obs.reduce(vv, w).reshape(-1), values)
                coefficients = d_pred_d_o.reshape(d_pred_d_o.shape[0], values.shape[0], -1)
                jac = jac + _direct_jacobian(obs, trajectory, potential, w, chunk_size, coefficients)
        if obs.depends_on_parameters and type(obs).reduce is Observable.reduce:
            jac = jac + _direct_jacobian(obs, trajectory, potential, w, chunk_size)
        predictions.append(prediction)
        jacobians.append(jac.reshape(*prediction.shape, grad_u.shape[1]))
    loss = float(total_loss(list(targets), predictions))
    return LinearModel(
        predictions=predictions,
        jacobians=jacobians,
        energy_gradients=grad_u,
        weights=w,
        beta_per_eV=beta,
        loss=loss,
        ess_fraction=effective_sample_size(lw) / trajectory.n_frames,
    )


def residuals_and_jacobian(targets: Sequence[Target], model: LinearModel | StackedModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacked residuals r [M] and Jacobian J [M, n_parameters] with L = ‖r‖² (float64)."""
    rs, js = [], []
    for target, prediction, jac in zip(targets, model.predictions, model.jacobians):
        mask = target._mask()
        scale = torch.full_like(target.reference, (target.weight / int(mask.sum())) ** 0.5)
        if target.sigma is not None:
            scale = scale / target.sigma
        rs.append((scale * (prediction - target.reference))[mask].reshape(-1))
        js.append((scale[..., None] * jac)[mask].reshape(-1, jac.shape[-1]))
    return torch.cat(rs), torch.cat(js)


def curvature_spectrum(targets: Sequence[Target], model: LinearModel | StackedModel) -> list[float]:
    """Eigenvalues of the targets' JᵀJ at the model's parameters, ascending (the loss changes by
    λ·|δ|² for a step δ along an eigenvector): how well the data determine each combination of
    parameters. A tiny eigenvalue next to large ones is a direction the data leave free; a step
    along it fits noise (give those parameters priors, :mod:`.prior`). Priors are not included."""
    _, J = residuals_and_jacobian(targets, model)
    return [float(x) for x in torch.linalg.eigvalsh(J.T @ J)]


def gauss_newton_step(targets: Sequence[Target], model: LinearModel | StackedModel, damping: float,
                      max_step_kT: float, extra_rows: tuple[torch.Tensor, torch.Tensor] | None = None
                      ) -> tuple[torch.Tensor, float]:
    """The damped Gauss–Newton step Δθ [n_parameters] and its energy spread std_i(β ΔU_i)
    (of several state points: the largest).

    ``targets``: those of ``model``'s predictions, in the same order. ``extra_rows``: residuals
    [M] and Jacobian [M, n_parameters] added to the targets' (the priors, :mod:`.prior`).
    Parameters that no residual depends on (zero columns of J) do not move. The step is shortened
    along its direction when the spread exceeds ``max_step_kT``.
    """
    r, J = residuals_and_jacobian(targets, model)
    if extra_rows is not None:
        r, J = torch.cat([r, extra_rows[0]]), torch.cat([J, extra_rows[1]])
    A = J.T @ J
    g = J.T @ r
    diag = torch.diagonal(A).clone()
    active = diag > 1e-14 * float(diag.max().clamp_min(1e-300))
    step = torch.zeros_like(g)
    if bool(active.any()):
        Aa = A[active][:, active]
        da = diag[active]
        lhs = Aa + damping * torch.diag(da) + 1e-12 * float(da.max()) * torch.eye(len(da), dtype=A.dtype)
        step[active] = -torch.linalg.solve(lhs, g[active])
    spread = model.spread(step)
    if spread > max_step_kT:
        step = step * (max_step_kT / spread)
        spread = max_step_kT
    return step, spread


def _energy_spread(model: LinearModel, step: torch.Tensor) -> float:
    du = model.beta_per_eV * (model.energy_gradients @ step)
    mean = model.weights @ du
    return float((model.weights @ (du - mean) ** 2).sqrt())


def apply_step(potential: Potential, step: torch.Tensor) -> None:
    """θ ← θ + Δθ for the flat step vector (ordered as ``potential.trainable_parameters()``)."""
    offset = 0
    with torch.no_grad():
        for p in potential.trainable_parameters():
            n = p.numel()
            p.add_(step[offset:offset + n].reshape(p.shape).to(p.dtype))
            offset += n
