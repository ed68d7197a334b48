"""Targets: an observable, the measured curve on the observable's grid, and how deviations count."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..experiment import ExperimentalData
from ..observables.base import Observable


@dataclass
class Target:
    """One experimental target of the loss.

    Attributes:
        name: identifier used in logs and plots (no spaces).
        observable: computes the simulated quantity.
        reference: [n_grid] (or scalar) measured values on the observable's grid, float64.
        sigma: same shape as ``reference``: measurement uncertainty; when given the loss is
            χ² = mean(((pred − ref)/σ)²), otherwise the mean squared deviation.
        mask: [n_grid] bool, the grid points that enter loss and RMSE (the fit range).
        weight: γ_k, the factor of this target in the total loss.
        measured: the measurement at its own points (for plots and reports; ``reference`` is
            it interpolated onto the grid), or None (a scalar, or a reference made otherwise).
    """

    name: str
    observable: Observable
    reference: torch.Tensor
    sigma: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    weight: float = 1.0
    measured: ExperimentalData | None = None

    def __post_init__(self) -> None:
        self.reference = torch.as_tensor(self.reference, dtype=torch.float64)
        if self.mask is not None:
            self.mask = torch.as_tensor(self.mask, dtype=torch.bool)
            if self.mask.shape != self.reference.shape:
                raise ValueError(f"target {self.name}: mask and reference differ in shape")
            if not bool(self.mask.any()):
                raise ValueError(f"target {self.name}: the fit range contains no grid point")
        if self.sigma is not None:
            self.sigma = torch.as_tensor(self.sigma, dtype=torch.float64)
            if self.sigma.shape != self.reference.shape:
                raise ValueError(f"target {self.name}: sigma and reference differ in shape")
            if bool((self.sigma[self._mask()] <= 0).any()):
                raise ValueError(f"target {self.name}: sigma must be positive inside the fit range")
        if not bool(torch.isfinite(self.reference[self._mask()]).all()):
            raise ValueError(f"target {self.name}: the measured values contain NaN or inf in the fit range")
        if self.weight < 0:
            raise ValueError(f"target {self.name}: weight must be ≥ 0, got {self.weight}")

    def _mask(self) -> torch.Tensor:
        if self.mask is None:
            return torch.ones_like(self.reference, dtype=torch.bool)
        return self.mask

    def deviation(self, prediction: torch.Tensor) -> torch.Tensor:
        """Deviations prediction − reference inside the fit range (in σ units if σ is given)."""
        m = self._mask()
        diff = prediction.to(torch.float64)[m] - self.reference[m]
        if self.sigma is not None:
            diff = diff / self.sigma[m]
        return diff

    def loss(self, prediction: torch.Tensor) -> torch.Tensor:
        """γ · mean squared deviation (or χ² per point when σ is given); differentiable."""
        return self.weight * (self.deviation(prediction) ** 2).mean()

    def rmse(self, prediction: torch.Tensor) -> float:
        """Root-mean-square deviation inside the fit range, in the observable's unit (σ ignored)."""
        m = self._mask()
        diff = prediction.detach().to(torch.float64)[m] - self.reference[m]
        return float(diff.pow(2).mean().sqrt())


def total_loss(targets: list[Target], predictions: list[torch.Tensor]) -> torch.Tensor:
    """Σ_k γ_k · loss_k of the reweighted predictions."""
    loss = targets[0].loss(predictions[0])
    for target, prediction in zip(targets[1:], predictions[1:]):
        loss = loss + target.loss(prediction)
    return loss
