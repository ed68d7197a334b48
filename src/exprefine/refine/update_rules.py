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

Two rules: :class:`AdamRule` (any number of parameters; the chunked reweighted gradient, plus
λ·L_DFT of a labelled batch in fused runs) and :class:`GaussNewtonRule` (few parameters;
Levenberg–Marquardt steps on the Jacobian of the reweighted averages, see :mod:`.gauss_newton`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Sequence

import torch

from ..potentials.base import Potential
from ..reweighting import ReweightedStep, reweighted_loss_and_gradient
from ..trajectory import Trajectory
from .fused import FusedDFT, accumulate_dft_gradient
from .gauss_newton import GaussNewtonSettings, LinearModel, apply_step, gauss_newton_step, linearize
from .targets import Target, total_loss


@dataclass
class Ensemble:
    """The trajectory the updates reweight, its parameter-independent observable values, its file name."""

    trajectory: Trajectory
    static: list
    file: str | None


@dataclass
class Step:
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


def parameter_summary(potential: Potential) -> dict[str, float]:
    """Named scalar values of the parameters, if the potential offers ``summary()``."""
    summary = getattr(potential, "summary", None)
    return dict(summary()) if callable(summary) else {}


def reweight(potential: Potential, targets: Sequence[Target], ensemble: Ensemble, chunk_size: int,
             gradient: bool) -> ReweightedStep:
    """Loss, ESS and (if ``gradient``) ∂L/∂θ accumulated in the parameters' .grad at the current θ."""
    return reweighted_loss_and_gradient(
        potential, ensemble.trajectory, [t.observable for t in targets], ensemble.static,
        partial(total_loss, list(targets)), chunk_size=chunk_size, compute_gradient=gradient,
    )


class UpdateRule:
    """The interface of an update rule (see the module docstring)."""

    name = ""

    def __init__(self, potential: Potential, targets: Sequence[Target], chunk_size: int) -> None:
        self.potential = potential
        self.targets = list(targets)
        self.chunk_size = chunk_size

    @property
    def learning_rate(self) -> float:
        """The step size logged with each update."""
        raise NotImplementedError

    @property
    def damping(self) -> float:
        """The Levenberg–Marquardt damping logged with each update (0 where there is none)."""
        return 0.0

    def force_resample(self) -> bool:
        """True when the next update needs a fresh trajectory whatever N_eff says."""
        return False

    def propose(self, ensemble: Ensemble) -> tuple[Step, Ensemble]:
        """The step from θ, and the ensemble the loop continues with."""
        raise NotImplementedError

    def apply(self, step: Step) -> None:
        """θ ← θ + step."""
        raise NotImplementedError

    def roll_back(self, good_state: dict, ensemble: Ensemble) -> tuple[Ensemble, str]:
        """θ after a sampling blew up (``good_state``: the parameters of the current trajectory);
        the ensemble to continue with and what was done, for the warning."""
        raise NotImplementedError

    def fallback_state(self, good_state: dict) -> tuple[dict, str]:
        """The parameters the final check falls back to when its run fails, and what they are."""
        return good_state, "good trajectory"

    def better_accepted_state(self, final_loss: float) -> tuple[dict, float] | None:
        """Parameters accepted earlier whose loss beats ``final_loss`` (and that loss), if the rule keeps any."""
        return None

    def kept_trajectory_files(self) -> set[str]:
        """Trajectory files the rule still needs besides the current one."""
        return set()

    def checkpoint_entries(self) -> dict[str, Any]:
        raise NotImplementedError

    def restore(self, checkpoint: dict[str, Any], ensemble: Ensemble, load: Callable[[str], Ensemble]) -> None:
        """The rule's state from a checkpoint; ``ensemble`` is the checkpoint's current one and ``load``
        reads another trajectory file of the run."""
        raise NotImplementedError


class AdamRule(UpdateRule):
    """Adam on the reweighted gradient (plus λ·∂L_DFT/∂θ of a labelled batch in fused runs).

    Args:
        learning_rate: the default step size; ``learning_rates`` overrides it per parameter (by identity).
        decay: factor on every step size after each update.
        betas: Adam's (β₁, β₂).
        dft: the labelled frames of a fused run, and the random stream that draws their batches.
    """

    name = "adam"

    def __init__(self, potential: Potential, targets: Sequence[Target], chunk_size: int, learning_rate: float,
                 decay: float = 1.0, betas: tuple[float, float] = (0.9, 0.999),
                 learning_rates: dict[int, float] | None = None, dft: FusedDFT | None = None,
                 dft_generator: torch.Generator | None = None) -> None:
        super().__init__(potential, targets, chunk_size)
        self.optimizer = make_adam(potential, learning_rate, betas, learning_rates)
        self.decay = decay
        self.dft = dft
        self.dft_generator = dft_generator

    @property
    def learning_rate(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def propose(self, ensemble: Ensemble) -> tuple[Step, Ensemble]:
        self.optimizer.zero_grad(set_to_none=True)
        step = reweight(self.potential, self.targets, ensemble, self.chunk_size, gradient=True)
        loss, dft_loss = step.loss, 0.0
        parameters = parameter_summary(self.potential)
        if self.dft is not None and self.dft.weight > 0:
            assert self.dft_generator is not None
            dft_loss = accumulate_dft_gradient(self.potential, self.dft, self.dft_generator)
            loss += self.dft.weight * dft_loss
        return Step(step.predictions, loss, step.ess_fraction, parameters, dft_loss=dft_loss), ensemble

    def apply(self, step: Step) -> None:
        self.optimizer.step()
        for group in self.optimizer.param_groups:
            group["lr"] *= self.decay

    def roll_back(self, good_state: dict, ensemble: Ensemble) -> tuple[Ensemble, str]:
        self.potential.load_state_dict(good_state)
        for group in self.optimizer.param_groups:
            group["lr"] *= 0.5
        return ensemble, f"parameters rolled back, step size halved to {self.learning_rate:.3g}"

    def checkpoint_entries(self) -> dict[str, Any]:
        return {"optimizer_state": self.optimizer.state_dict()}

    def restore(self, checkpoint: dict[str, Any], ensemble: Ensemble, load: Callable[[str], Ensemble]) -> None:
        self.optimizer.load_state_dict(checkpoint["optimizer_state"])


def make_adam(potential: Potential, learning_rate: float, betas: tuple[float, float],
              learning_rates: dict[int, float] | None = None) -> torch.optim.Adam:
    """Adam over the trainable parameters, one parameter group per step size."""
    params = [p for p in potential.parameters() if p.requires_grad]
    rates = learning_rates or {}
    groups: dict[float, list[torch.nn.Parameter]] = {}
    for p in params:
        groups.setdefault(float(rates.get(id(p), learning_rate)), []).append(p)
    return torch.optim.Adam([{"params": ps, "lr": lr} for lr, ps in groups.items()], lr=learning_rate, betas=betas)


@dataclass
class Anchor:
    """Gauss–Newton: the last accepted parameters, the ensemble they were evaluated on, and the model there."""

    potential_state: dict
    ensemble: Ensemble
    model: LinearModel

    @property
    def loss(self) -> float:
        return self.model.loss


class GaussNewtonRule(UpdateRule):
    """Levenberg–Marquardt steps with acceptance against the last accepted point (the anchor).

    A θ whose loss exceeds the anchor's is rejected: θ returns to the anchor and the damping
    grows. If the two losses came from different trajectories, the anchor is first re-estimated
    on a fresh trajectory (its old estimate may have been a lucky fluctuation that no later step
    could beat). A blown-up sampling counts as a rejection.

    Args:
        settings: damping and step-length control.
        logged_learning_rate: the number logged as the learning rate (the rule has none).
    """

    name = "gauss_newton"

    def __init__(self, potential: Potential, targets: Sequence[Target], chunk_size: int,
                 settings: GaussNewtonSettings, logged_learning_rate: float = 0.0) -> None:
        super().__init__(potential, targets, chunk_size)
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

    def _new_anchor(self, ensemble: Ensemble, model: LinearModel) -> Anchor:
        return Anchor(copy.deepcopy(self.potential.state_dict()), ensemble, model)

    def propose(self, ensemble: Ensemble) -> tuple[Step, Ensemble]:
        s = self.settings
        model = linearize(self.potential, ensemble.trajectory, self.targets, ensemble.static, self.chunk_size)
        parameters = parameter_summary(self.potential)  # θ as evaluated, before any rollback below
        accepted, spread, delta = True, 0.0, None
        anchor = self.anchor
        if self.reevaluate:
            # θ is the last accepted point on a fresh trajectory: its new estimate replaces the old
            self.reevaluate = False
            self.anchor = self._new_anchor(ensemble, model)
        elif anchor is not None and model.loss > anchor.loss:
            accepted = False
            self._damping *= s.damping_increase
            self.potential.load_state_dict(anchor.potential_state)
            if ensemble.trajectory is anchor.ensemble.trajectory:
                # a paired comparison on the same frames: step again, shorter
                ensemble = anchor.ensemble
            else:
                # two independent noisy estimates: re-estimate the anchor on a fresh trajectory first
                self.reevaluate = True
                delta = torch.zeros(anchor.model.energy_gradients.shape[1], dtype=torch.float64)
        else:
            if anchor is not None:
                self._damping = max(self._damping * s.damping_decrease, s.min_damping)
            self.anchor = self._new_anchor(ensemble, model)
        if delta is None:
            assert self.anchor is not None
            delta, spread = gauss_newton_step(self.targets, self.anchor.model, self._damping, s.max_step_kT)
        return Step(model.predictions, model.loss, model.ess_fraction, parameters, accepted=accepted,
                    spread_kT=spread, delta=delta), ensemble

    def apply(self, step: Step) -> None:
        assert step.delta is not None
        apply_step(self.potential, step.delta)

    def roll_back(self, good_state: dict, ensemble: Ensemble) -> tuple[Ensemble, str]:
        if self.anchor is None:
            self.potential.load_state_dict(good_state)
            return ensemble, "parameters rolled back to those of the current trajectory"
        self._damping *= self.settings.damping_increase
        self.potential.load_state_dict(self.anchor.potential_state)
        delta, _ = gauss_newton_step(self.targets, self.anchor.model, self._damping, self.settings.max_step_kT)
        apply_step(self.potential, delta)
        return self.anchor.ensemble, (f"parameters rolled back to the last accepted ones, damping raised to "
                                      f"{self._damping:.3g}")

    def fallback_state(self, good_state: dict) -> tuple[dict, str]:
        if self.anchor is None:
            return good_state, "good trajectory"
        return self.anchor.potential_state, "accepted point"

    def better_accepted_state(self, final_loss: float) -> tuple[dict, float] | None:
        if self.anchor is not None and final_loss > self.anchor.loss:
            return self.anchor.potential_state, self.anchor.loss
        return None

    def kept_trajectory_files(self) -> set[str]:
        return {self.anchor.ensemble.file} if self.anchor is not None and self.anchor.ensemble.file else set()

    def checkpoint_entries(self) -> dict[str, Any]:
        anchor = self.anchor
        return {"gauss_newton": {
            "damping": self._damping,
            "anchor_potential_state": anchor.potential_state if anchor is not None else None,
            "anchor_trajectory_file": anchor.ensemble.file if anchor is not None else None,
            "reevaluate": self.reevaluate,
        }}

    def restore(self, checkpoint: dict[str, Any], ensemble: Ensemble, load: Callable[[str], Ensemble]) -> None:
        state = checkpoint.get("gauss_newton")
        if state is None:
            return
        self._damping = float(state["damping"])
        self.reevaluate = bool(state.get("reevaluate", False))
        if state["anchor_potential_state"] is None:
            return
        anchor_file = state["anchor_trajectory_file"]
        anchor_ensemble = ensemble if anchor_file == ensemble.file else load(anchor_file)
        current = copy.deepcopy(self.potential.state_dict())
        self.potential.load_state_dict(state["anchor_potential_state"])
        model = linearize(self.potential, anchor_ensemble.trajectory, self.targets, anchor_ensemble.static,
                          self.chunk_size)
        self.potential.load_state_dict(current)
        self.anchor = Anchor(state["anchor_potential_state"], anchor_ensemble, model)
