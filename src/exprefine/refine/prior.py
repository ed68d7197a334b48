"""Gaussian priors on trainable parameters: what the data cannot determine, physics can.

Structure data often fix only some combinations of a correction's parameters. D3's two global
scales are the example that made this module: S(Q) of g-C3N4 fixes how strongly the layers bind,
one combination of s6 and s8, and leaves the other nearly free (a loss curvature 10⁴–10⁵ times
smaller), so an unconstrained refinement wanders along it and its forces with it. A prior adds

    L_prior = Σ_p Σ_elements ((θ_p − μ_p) / σ_p)²

to the loss, in the currency of the targets (a target of weight 1 whose residual is one σ on
every point adds 1). For Gauss–Newton the prior is a set of extra residual rows (θ − μ)/σ with
Jacobian 1/σ; for Adam its gradient 2(θ − μ)/σ² is added to each parameter's ``.grad``. The
values are in the parameter's own representation (e.g. ln σ for Lennard-Jones σ; s6, s8 as they
are for D3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass
class ParameterPrior:
    """A Gaussian prior on one trainable parameter tensor.

    Attributes:
        name: how logs and errors name it (``terms.1.s6``).
        parameter: the trainable tensor.
        mean: μ, broadcast to the parameter's shape (stored as float64: give float64 values, a
            float32 tensor has already lost digits).
        sigma: σ > 0, broadcast likewise.
    """

    name: str
    parameter: torch.nn.Parameter
    mean: torch.Tensor
    sigma: torch.Tensor

    def __post_init__(self) -> None:
        if not self.parameter.requires_grad:
            raise ValueError(f"prior on {self.name}: the parameter is not trainable")
        shape = self.parameter.shape
        try:
            self.mean = torch.as_tensor(self.mean, dtype=torch.float64).broadcast_to(shape).clone()
            self.sigma = torch.as_tensor(self.sigma, dtype=torch.float64).broadcast_to(shape).clone()
        except RuntimeError:
            raise ValueError(f"prior on {self.name}: mean and sigma must be one value or {self.parameter.numel()} "
                             f"values (the parameter's shape {tuple(shape)})") from None
        if not bool(torch.isfinite(self.mean).all()):
            raise ValueError(f"prior on {self.name}: the mean is not finite")
        if not bool((self.sigma > 0).all()) or not bool(torch.isfinite(self.sigma).all()):
            raise ValueError(f"prior on {self.name}: sigma must be positive and finite")

    def residuals(self) -> torch.Tensor:
        """[numel] (θ − μ)/σ at the current value (float64, CPU)."""
        theta = self.parameter.detach().to(device="cpu", dtype=torch.float64)
        return ((theta - self.mean) / self.sigma).reshape(-1)


def prior_loss(priors: Sequence[ParameterPrior]) -> float:
    """Σ ((θ − μ)/σ)² over every prior at the current parameters (0 without priors)."""
    return float(sum(float((p.residuals() ** 2).sum()) for p in priors))


def add_prior_gradient(priors: Sequence[ParameterPrior]) -> None:
    """Add ∂L_prior/∂θ = 2(θ − μ)/σ² to each constrained parameter's ``.grad``."""
    for p in priors:
        grad = (2.0 * p.residuals().reshape(p.sigma.shape) / p.sigma).to(device=p.parameter.device,
                                                                         dtype=p.parameter.dtype)
        p.parameter.grad = grad if p.parameter.grad is None else p.parameter.grad + grad


def prior_rows(priors: Sequence[ParameterPrior], params: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual rows r [M] and their Jacobian J [M, n_parameters] (float64) of the priors, for the
    flat parameter vector ordered as ``params``; M = 0 without priors."""
    offsets, offset = {}, 0
    for q in params:
        offsets[id(q)] = offset
        offset += q.numel()
    rs, js = [], []
    for p in priors:
        if id(p.parameter) not in offsets:
            raise ValueError(f"prior on {p.name}: the parameter is not among the refined ones")
        n, start = p.parameter.numel(), offsets[id(p.parameter)]
        jac = torch.zeros(n, offset, dtype=torch.float64)
        jac[torch.arange(n), start + torch.arange(n)] = 1.0 / p.sigma.reshape(-1)
        rs.append(p.residuals())
        js.append(jac)
    if not rs:
        return torch.zeros(0, dtype=torch.float64), torch.zeros(0, offset, dtype=torch.float64)
    return torch.cat(rs), torch.cat(js)
