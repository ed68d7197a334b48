"""How θ moves: the refiner's update rules behind one small interface.

The refiner's loop is the same for every rule — sample, reweight, check N_eff, step, log,
checkpoint — the way ``torch.optim`` separates a step from the training loop. An update rule

* :meth:`~UpdateRule.propose`: evaluates the reweighted loss at θ on the current ensemble and
  decides the step (it may also reject θ and continue from another ensemble);
* :meth:`~UpdateRule.apply`: takes the step;
* :meth:`~UpdateRule.roll_back`: reacts to a sampling that blew up;
* :meth:`~UpdateRule.fallback_state` / :meth:`~UpdateRule.better_accepted_state`: what the final
  check falls back to;
* :meth:`~UpdateRule.checkpoint_entries` / :meth:`~UpdateRule.restore`: its state in a checkpoint.

With several state points (:mod:`.state_points`) each rank works on the ensembles it holds (a
dict from state-point index to :class:`~.frames.Ensemble`: whole state points, or some replica
groups of one, :mod:`.frames`); their losses, gradients and Jacobians are combined over ranks
through a :class:`~.collective.Collective`, so every rank takes the same step.

Two rules: :class:`AdamRule` (any number of parameters; the chunked reweighted gradient, plus
λ·L_DFT of a labelled batch in fused runs) and :class:`GaussNewtonRule` (few parameters;
Levenberg–Marquardt steps on the Jacobian of the reweighted averages, see :mod:`.gauss_newton`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from ..io.checkpoint import compact_state, full_state
from ..potentials.base import Potential
from .collective import Collective
from .frames import Ensemble, Ensembles, PointEstimate, linearize_points, reweight_points
from .fused import FusedDFT, accumulate_dft_gradient
from .gauss_newton import (
    GaussNewtonSettings,
    StackedModel,
    apply_step,
    curvature_spectrum,
    gauss_newton_step,
)
from .prior import ParameterPrior, add_prior_gradient, prior_loss, prior_rows
from .state_points import StatePoint, point_owner
from .targets import Target


@dataclass
class Step:
    """What one update computed at θ: every state point's reweighted predictions and loss, and the step.

    ``delta`` is the Gauss–Newton step (None for Adam, whose gradients are in the parameters' ``.grad``).
    """

    points: list[PointEstimate]
    loss: float
    parameters: dict[str, float]
    accepted: bool = True
    spread_kT: float = 0.0
    delta: torch.Tensor | None = None
    dft_loss: float = 0.0
    #: |∂L/∂θ| of the reweighted loss (Adam; Gauss–Newton: |Jᵀr|·2)
    gradient_norm: float = 0.0
    #: Σ ((θ − μ)/σ)² of the parameter priors at θ (included in ``loss``; None without priors)
    prior_loss: float | None = None
    #: Gauss–Newton: eigenvalues of the data's JᵀJ at θ, ascending (:func:`.gauss_newton.curvature_spectrum`)
    curvature_eigenvalues: list[float] | None = None

    @property
    def ess_fraction(self) -> float:
        """The smallest N_eff/N of the state points."""
        return min(p.ess_fraction for p in self.points)


def parameter_summary(potential: Potential) -> dict[str, float]:
    """Named scalar values of the parameters, if the potential offers ``summary()``."""
    summary = getattr(potential, "summary", None)
    return dict(summary()) if callable(summary) else {}


def gather_points(collective: Collective, local: dict[int, Any], n_points: int) -> list[Any]:
    """Every state point's value (each rank gives those of its own), in state-point order."""
    merged: dict[int, Any] = {}
    for part in collective.gather(local):
        merged.update(part)
    missing = [k for k in range(n_points) if k not in merged]
    if missing:
        raise RuntimeError(f"no rank reported state points {missing}")
    return [merged[k] for k in range(n_points)]


def all_ranks_agree(collective: Collective, flag: bool) -> bool:
    """True when ``flag`` is true on every rank."""
    return float(collective.sum(torch.tensor([0.0 if flag else 1.0], dtype=torch.float64))[0]) == 0.0


def set_gradient(params: Sequence[torch.Tensor], flat: torch.Tensor, present: Sequence[bool]) -> None:
    """Write ``flat`` into the parameters' .grad (None where no state point's loss reached the parameter)."""
    offset = 0
    for p, has in zip(params, present):
        n = p.numel()
        p.grad = flat[offset:offset + n].reshape(p.shape).to(device=p.device, dtype=p.dtype) if has else None
        offset += n


class UpdateRule:
    """The interface of an update rule (see the module docstring).

    Args:
        potential: the model (its trainable parameters are moved in place).
        points: every state point of the run (on every rank).
        chunk_size: frames per backward pass.
        collective: the sums over ranks (the single-process one by default).
        priors: Gaussian priors on parameters, added to the loss (:mod:`.prior`).
    """

    name = ""

    def __init__(self, potential: Potential, points: Sequence[StatePoint], chunk_size: int,
                 collective: Collective | None = None, priors: Sequence[ParameterPrior] = ()) -> None:
        self.potential = potential
        self.points = list(points)
        self.chunk_size = chunk_size
        self.collective = collective or Collective()
        self.priors = list(priors)

    def prior_loss(self) -> float | None:
        """L_prior at the current parameters (None without priors)."""
        return prior_loss(self.priors) if self.priors else None

    @property
    def targets(self) -> list[Target]:
        """Every target of every state point, in state-point order."""
        return [t for p in self.points for t in p.targets]

    @property
    def learning_rate(self) -> float:
        """The step size logged with each update."""
        raise NotImplementedError

    @property
    def damping(self) -> float:
        """The Levenberg–Marquardt damping logged with each update (0 where there is none)."""
        return 0.0

    def force_resample(self) -> bool:
        """True when the next update needs fresh trajectories whatever N_eff says."""
        return False

    def propose(self, ensembles: Ensembles) -> tuple[Step, Ensembles]:
        """The step from θ, and the ensembles (of this rank's state points) the loop continues with."""
        raise NotImplementedError

    def apply(self, step: Step) -> None:
        """θ ← θ + step."""
        raise NotImplementedError

    def roll_back(self, good_state: dict, ensembles: Ensembles) -> tuple[Ensembles, str]:
        """θ after a sampling blew up (``good_state``: the parameters of the blown-up state point's current
        trajectory); the ensembles to continue with and what was done, for the warning."""
        raise NotImplementedError

    def fallback_state(self, good_state: dict) -> tuple[dict, str]:
        """The parameters the final check falls back to when its run fails, and what they are."""
        return good_state, "good trajectory"

    def better_accepted_state(self, final_loss: float) -> tuple[dict, float] | None:
        """Parameters accepted earlier whose loss beats ``final_loss`` (and that loss), if the rule keeps any."""
        return None

    def kept_trajectory_files(self) -> dict[int, str]:
        """Trajectory files (by state-point index, this rank's) the rule still needs besides the current ones."""
        return {}

    def checkpoint_entries(self) -> dict[str, Any]:
        """The rule's state for a checkpoint (called on every rank: it may gather; rank 0 writes it)."""
        raise NotImplementedError

    def restore(self, checkpoint: dict[str, Any], ensembles: Ensembles, load: Callable[[int, str], Ensemble]) -> None:
        """The rule's state from a checkpoint; ``ensembles`` are the checkpoint's current ones (this rank's)
        and ``load(k, file)`` reads another trajectory file of state point ``k``."""
        raise NotImplementedError


class AdamRule(UpdateRule):
    """Adam on the reweighted gradient (plus λ·∂L_DFT/∂θ of a labelled batch in fused runs).

    Each state point's gradient is computed on its own (on the rank that holds it), the rows
    are summed over ranks and added in state-point order: the same numbers on any number of ranks.

    Args:
        learning_rate: the default step size; ``learning_rates`` overrides it per parameter (by identity).
        decay: factor on every step size after each update.
        betas: Adam's (β₁, β₂).
        dft: the labelled frames of a fused run, and the random stream that draws their batches (the
            same on every rank, so every rank adds the same λ·∂L_DFT/∂θ).
    """

    name = "adam"

    def __init__(self, potential: Potential, points: Sequence[StatePoint], chunk_size: int, learning_rate: float,
                 decay: float = 1.0, betas: tuple[float, float] = (0.9, 0.999),
                 learning_rates: dict[int, float] | None = None, dft: FusedDFT | None = None,
                 dft_generator: torch.Generator | None = None, collective: Collective | None = None,
                 priors: Sequence[ParameterPrior] = ()) -> None:
        super().__init__(potential, points, chunk_size, collective, priors)
        self.optimizer = make_adam(potential, learning_rate, betas, learning_rates)
        self.decay = decay
        self.dft = dft
        self.dft_generator = dft_generator

    @property
    def learning_rate(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def propose(self, ensembles: Ensembles) -> tuple[Step, Ensembles]:
        params = self.potential.trainable_parameters()
        local, rows, reached = reweight_points(self.potential, self.points, ensembles, self.chunk_size,
                                               self.collective, gradient=True)
        assert rows is not None and reached is not None
        points = gather_points(self.collective, local, len(self.points))
        gradient = rows.sum(0)
        set_gradient(params, gradient, [bool(v > 0) for v in reached.sum(0)])
        loss = float(sum(p.loss for p in points))
        prior = self.prior_loss()
        if prior is not None:
            add_prior_gradient(self.priors)
            loss += prior
        parameters = parameter_summary(self.potential)
        dft_loss = 0.0
        if self.dft is not None and self.dft.weight > 0:
            assert self.dft_generator is not None
            dft_loss = accumulate_dft_gradient(self.potential, self.dft, self.dft_generator)
            loss += self.dft.weight * dft_loss
        return Step(points, loss, parameters, dft_loss=dft_loss, gradient_norm=float(gradient.norm()),
                    prior_loss=prior), ensembles

    def apply(self, step: Step) -> None:
        self.optimizer.step()
        for group in self.optimizer.param_groups:
            group["lr"] *= self.decay

    def roll_back(self, good_state: dict, ensembles: Ensembles) -> tuple[Ensembles, str]:
        self.potential.load_state_dict(good_state)
        for group in self.optimizer.param_groups:
            group["lr"] *= 0.5
        return ensembles, f"parameters rolled back, step size halved to {self.learning_rate:.3g}"

    def checkpoint_entries(self) -> dict[str, Any]:
        return {"optimizer_state": self.optimizer.state_dict()}

    def restore(self, checkpoint: dict[str, Any], ensembles: Ensembles, load: Callable[[int, str], Ensemble]) -> None:
        self.optimizer.load_state_dict(checkpoint["optimizer_state"])


def make_adam(potential: Potential, learning_rate: float, betas: tuple[float, float],
              learning_rates: dict[int, float] | None = None) -> torch.optim.Adam:
    """Adam over the trainable parameters, one parameter group per step size."""
    params = potential.trainable_parameters()
    rates = learning_rates or {}
    groups: dict[float, list[torch.nn.Parameter]] = {}
    for p in params:
        groups.setdefault(float(rates.get(id(p), learning_rate)), []).append(p)
    return torch.optim.Adam([{"params": ps, "lr": lr} for lr, ps in groups.items()], lr=learning_rate, betas=betas)


@dataclass
class PointModel:
    """What one state point contributes to the Gauss–Newton problem (small: gathered over ranks)."""

    predictions: list[torch.Tensor]
    jacobians: list[torch.Tensor]
    energy_covariance: torch.Tensor
    loss: float
    ess_fraction: float
    n_frames: int


def stacked_model(potential: Potential, points: Sequence[StatePoint], ensembles: Ensembles, chunk_size: int,
                  collective: Collective) -> StackedModel:
    """Linearise every state point at θ (each where it is reweighted, from the per-frame numbers of the
    ranks that hold its frames) and stack all of them (gathered over ranks)."""
    local = {}
    for k, model in linearize_points(potential, points, ensembles, chunk_size, collective).items():
        local[k] = PointModel(model.predictions, model.jacobians, model.energy_covariance(), model.loss,
                              model.ess_fraction, int(model.weights.numel()))
    parts: list[PointModel] = gather_points(collective, local, len(points))
    return StackedModel(
        n_frames=[part.n_frames for part in parts],
        predictions=[p for part in parts for p in part.predictions],
        jacobians=[j for part in parts for j in part.jacobians],
        energy_covariances=[part.energy_covariance for part in parts],
        point_losses=[part.loss for part in parts],
        ess_fractions=[part.ess_fraction for part in parts],
    )


def split_predictions(points: Sequence[StatePoint], model: StackedModel) -> list[PointEstimate]:
    """The stacked predictions back per state point."""
    out, offset = [], 0
    for k, point in enumerate(points):
        n = len(point.targets)
        out.append(PointEstimate(model.predictions[offset:offset + n], model.point_losses[k], model.ess_fractions[k],
                                 model.n_frames[k]))
        offset += n
    return out


@dataclass
class Anchor:
    """Gauss–Newton: the last accepted parameters, the ensembles (this rank's) they were evaluated on,
    and the stacked model there."""

    potential_state: dict
    ensembles: Ensembles
    model: StackedModel
    prior_loss: float | None = None

    @property
    def loss(self) -> float:
        """The loss there, the priors' included."""
        return self.model.loss + (self.prior_loss or 0.0)


class GaussNewtonRule(UpdateRule):
    """Levenberg–Marquardt steps with acceptance against the last accepted point (the anchor).

    A θ whose loss exceeds the anchor's is rejected: θ returns to the anchor and the damping
    grows. If the two losses came from different trajectories, the anchor is first re-estimated
    on fresh trajectories (its old estimate may have been a lucky fluctuation that no later step
    could beat). A blown-up sampling counts as a rejection. The residuals and Jacobians of all
    state points form one least-squares problem; each state point's energy spread is capped.

    Args:
        settings: damping and step-length control.
        logged_learning_rate: the number logged as the learning rate (the rule has none).
    """

    name = "gauss_newton"

    def __init__(self, potential: Potential, points: Sequence[StatePoint], chunk_size: int,
                 settings: GaussNewtonSettings, logged_learning_rate: float = 0.0,
                 collective: Collective | None = None, priors: Sequence[ParameterPrior] = ()) -> None:
        super().__init__(potential, points, chunk_size, collective, priors)
        self.settings = settings
        self._damping = settings.initial_damping
        self.anchor: Anchor | None = None
        self.reevaluate = False
        self._logged_learning_rate = logged_learning_rate

    @property
    def learning_rate(self) -> float:
        return self._logged_learning_rate

    @property
    def damping(self) -> float:
        return self._damping

    def force_resample(self) -> bool:
        return self.reevaluate

    def _new_anchor(self, ensembles: Ensembles, model: StackedModel) -> Anchor:
        return Anchor(copy.deepcopy(self.potential.state_dict()), dict(ensembles), model, self.prior_loss())

    def _step(self, model: StackedModel) -> tuple[torch.Tensor, float]:
        """The step from the current parameters (those of ``model``), the priors' rows included."""
        rows = prior_rows(self.priors, self.potential.trainable_parameters()) if self.priors else None
        return gauss_newton_step(self.targets, model, self._damping, self.settings.max_step_kT, rows)

    def propose(self, ensembles: Ensembles) -> tuple[Step, Ensembles]:
        s = self.settings
        model = stacked_model(self.potential, self.points, ensembles, self.chunk_size, self.collective)
        parameters = parameter_summary(self.potential)  # θ as evaluated, before any rollback below
        prior = self.prior_loss()
        loss = model.loss + (prior or 0.0)
        accepted, spread, delta = True, 0.0, None
        anchor = self.anchor
        if self.reevaluate:
            # θ is the last accepted point on fresh trajectories: its new estimate replaces the old
            self.reevaluate = False
            self.anchor = self._new_anchor(ensembles, model)
        elif anchor is not None and loss > anchor.loss:
            accepted = False
            self._damping *= s.damping_increase
            self.potential.load_state_dict(anchor.potential_state)
            paired = all(ensembles[k] is anchor.ensembles.get(k) for k in ensembles)
            if all_ranks_agree(self.collective, paired):
                # a paired comparison on the same frames: step again, shorter
                ensembles = dict(anchor.ensembles)
            else:
                # independent noisy estimates: re-estimate the anchor on fresh trajectories first
                self.reevaluate = True
                delta = torch.zeros(anchor.model.n_parameters, dtype=torch.float64)
        else:
            if anchor is not None:
                self._damping = max(self._damping * s.damping_decrease, s.min_damping)
            self.anchor = self._new_anchor(ensembles, model)
        if delta is None:
            assert self.anchor is not None
            delta, spread = self._step(self.anchor.model)
        return Step(split_predictions(self.points, model), loss, parameters, accepted=accepted,
                    spread_kT=spread, delta=delta, prior_loss=prior,
                    curvature_eigenvalues=curvature_spectrum(self.targets, model)), ensembles

    def apply(self, step: Step) -> None:
        assert step.delta is not None
        apply_step(self.potential, step.delta)

    def roll_back(self, good_state: dict, ensembles: Ensembles) -> tuple[Ensembles, str]:
        if self.anchor is None:
            self.potential.load_state_dict(good_state)
            return ensembles, "parameters rolled back to those of the current trajectory"
        self._damping *= self.settings.damping_increase
        self.potential.load_state_dict(self.anchor.potential_state)
        delta, _ = self._step(self.anchor.model)
        apply_step(self.potential, delta)
        return dict(self.anchor.ensembles), (f"parameters rolled back to the last accepted ones, damping raised to "
                                             f"{self._damping:.3g}")

    def fallback_state(self, good_state: dict) -> tuple[dict, str]:
        if self.anchor is None:
            return good_state, "good trajectory"
        return self.anchor.potential_state, "accepted point"

    def better_accepted_state(self, final_loss: float) -> tuple[dict, float] | None:
        if self.anchor is not None and final_loss > self.anchor.loss:
            return self.anchor.potential_state, self.anchor.loss
        return None

    def kept_trajectory_files(self) -> dict[int, str]:
        if self.anchor is None:
            return {}
        return {k: e.file for k, e in self.anchor.ensembles.items() if e.file and e.reweighted_here}

    def checkpoint_entries(self) -> dict[str, Any]:
        anchor = self.anchor
        files = gather_points(self.collective, {k: e.file for k, e in anchor.ensembles.items() if e.reweighted_here}
                              if anchor is not None else {k: None for k in self._local_indices()}, len(self.points))
        state: dict[str, Any] = {
            "damping": self._damping,
            "anchor_potential_state": compact_state(self.potential, anchor.potential_state) if anchor is not None
            else None,
            "reevaluate": self.reevaluate,
        }
        if len(self.points) == 1:
            state["anchor_trajectory_file"] = files[0]
        else:
            state["anchor_trajectory_files"] = files
        return {"gauss_newton": state}

    def _local_indices(self) -> list[int]:
        world, rank = self.collective.world_size, self.collective.rank
        return [k for k in range(len(self.points)) if point_owner(self.points, k, world) == rank]

    def restore(self, checkpoint: dict[str, Any], ensembles: Ensembles, load: Callable[[int, str], Ensemble]) -> None:
        state = checkpoint.get("gauss_newton")
        if state is None:
            return
        self._damping = float(state["damping"])
        self.reevaluate = bool(state.get("reevaluate", False))
        if state["anchor_potential_state"] is None:
            return
        files = state.get("anchor_trajectory_files") or [state.get("anchor_trajectory_file")]
        anchor_ensembles = {k: e if files[k] == e.file else load(k, files[k]) for k, e in ensembles.items()}
        current = copy.deepcopy(self.potential.state_dict())
        anchor_state = full_state(self.potential, state["anchor_potential_state"], "the checkpoint's anchor")
        self.potential.load_state_dict(anchor_state)
        model = stacked_model(self.potential, self.points, anchor_ensembles, self.chunk_size, self.collective)
        prior = self.prior_loss()
        self.potential.load_state_dict(current)
        self.anchor = Anchor(anchor_state, anchor_ensembles, model, prior)
