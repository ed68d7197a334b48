"""Stillinger–Weber two-body term, and the full Stillinger–Weber potential of silicon.

Two-body part (Stillinger & Weber, Phys. Rev. B 31, 5262 (1985)), for r < aσ:

    φ₂(r) = A ε [B (σ/r)^p − (σ/r)^q] exp(σ / (r − aσ)),

and 0 beyond; the exponential makes φ₂ and all its derivatives vanish at the cutoff aσ. The
three-body part is :class:`~exprefine.potentials.three_body.StillingerWeberThreeBody`
(λε (cos θ − cos θ₀)² exp(γσ/(r_ij − aσ)) exp(γσ/(r_ik − aσ)) per angle); the two share ε, σ
and a. :func:`stillinger_weber_silicon` sums both with the published silicon parameters.

Trainable here: ``log_epsilon`` = ln(ε/eV) (the overall strength of the pair term; the
three-body term has its own λε) and ``log_B`` = ln B (the repulsion relative to the
attraction: it sets the bond length). σ, a, A, p and q are fixed (σ and a set the cutoff).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
from torch import nn

from .base import PairPotential, element_symbols
from .sum import SumPotential
from .three_body import StillingerWeberThreeBody

#: The names of the trainable parameters, as ``trainable`` may list them.
PAIR_PARAMETERS = ("epsilon", "B")

#: φ₂ is evaluated at r − aσ ≤ −this (Å): keeps σ/(r − aσ) finite (φ₂ is 0 there anyway).
_CUTOFF_GUARD_A = 1e-6


class StillingerWeberPair(PairPotential):
    """Stillinger–Weber pair energy A ε [B (σ/r)^p − (σ/r)^q] exp(σ/(r − aσ)) for r < aσ, one species set.

    Args:
        species: elements the term acts on (every pair of them, one parameter set).
        epsilon_eV: ε in eV (> 0).
        sigma_A: σ in Å (> 0, fixed).
        a: cutoff in units of σ (> 0, fixed).
        A, B: dimensionless strengths (> 0; A fixed, B trainable).
        p, q: exponents of the repulsion and the attraction (fixed).
        trainable: True (ε and B), False, or names out of ``("epsilon", "B")``.
    """

    def __init__(
        self,
        species: Sequence[str | int],
        epsilon_eV: float,
        sigma_A: float,
        a: float,
        A: float,
        B: float,
        p: float = 4.0,
        q: float = 0.0,
        trainable: bool | Iterable[str] = True,
    ) -> None:
        for name, value in (("epsilon_eV", epsilon_eV), ("sigma_A", sigma_A), ("a", a), ("A", A), ("B", B)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive and finite, got {value}")
        super().__init__(species, a * sigma_A)
        train = set(PAIR_PARAMETERS) if trainable is True else set() if trainable is False else set(trainable)
        unknown = train - set(PAIR_PARAMETERS)
        if unknown:
            raise ValueError(f"unknown trainable parameters {sorted(unknown)}; choose from {PAIR_PARAMETERS}")
        self.sigma_A = float(sigma_A)
        self.a = float(a)
        self.A = float(A)
        self.p = float(p)
        self.q = float(q)
        self.log_epsilon = nn.Parameter(torch.tensor(math.log(epsilon_eV), dtype=torch.float64),
                                        requires_grad="epsilon" in train)
        self.log_B = nn.Parameter(torch.tensor(math.log(B), dtype=torch.float64), requires_grad="B" in train)

    @property
    def epsilon_eV(self) -> torch.Tensor:
        return self.log_epsilon.exp()

    @property
    def B(self) -> torch.Tensor:
        return self.log_B.exp()

    def summary(self) -> dict[str, float]:
        """ε (eV) and B, for logs."""
        return {"epsilon_eV": float(self.epsilon_eV.detach()), "B": float(self.B.detach())}

    def pair_energy(self, r_A: torch.Tensor, pair_type: torch.Tensor) -> torch.Tensor:
        """[n_pairs] φ₂(r) in eV (every pair type shares the parameters)."""
        x = self.sigma_A / r_A
        radial = self.B.to(r_A.dtype) * x**self.p - x**self.q
        cutoff = torch.exp(self.sigma_A / (r_A - self.cutoff_A).clamp(max=-_CUTOFF_GUARD_A))
        return self.A * self.epsilon_eV.to(r_A.dtype) * radial * cutoff

    def extra_repr(self) -> str:
        return (f"species={element_symbols(self.species_numbers)}, sigma_A={self.sigma_A}, a={self.a}, "
                f"A={self.A}, p={self.p}, q={self.q}")


#: Stillinger & Weber's silicon: ε = 50 kcal/mol, σ = 2.0951 Å, a = 1.8, λ = 21, γ = 1.2,
#: A = 7.049556277, B = 0.6022245584, p = 4, q = 0, tetrahedral cos θ₀ = −1/3.
SILICON = {"epsilon_eV": 2.1683, "sigma_A": 2.0951, "a": 1.80, "lambda": 21.0, "gamma": 1.20,
           "A": 7.049556277, "B": 0.6022245584, "p": 4.0, "q": 0.0, "cos_theta0": -1.0 / 3.0}


def stillinger_weber_silicon(lambda_scale: float = 1.0, epsilon_scale: float = 1.0, B_scale: float = 1.0,
                             trainable_pair: bool | Iterable[str] = True,
                             trainable_three_body: bool | Iterable[str] = ("lambda_epsilon",)) -> SumPotential:
    """The Stillinger–Weber silicon potential (two-body + three-body), optionally with scaled parameters.

    Args:
        lambda_scale, epsilon_scale, B_scale: factors on λ (three-body strength), ε (pair
            strength; the three-body strength λε keeps the published ε) and B.
        trainable_pair: trainable parameters of the pair term (``epsilon``, ``B``).
        trainable_three_body: trainable parameters of the three-body term (λε by default).
    """
    s = SILICON
    pair = StillingerWeberPair(["Si"], s["epsilon_eV"] * epsilon_scale, s["sigma_A"], s["a"], s["A"],
                               s["B"] * B_scale, s["p"], s["q"], trainable=trainable_pair)
    three = StillingerWeberThreeBody(["Si"], s["lambda"] * lambda_scale * s["epsilon_eV"], s["cos_theta0"],
                                     s["gamma"], s["sigma_A"], s["a"], trainable=trainable_three_body)
    return SumPotential([pair, three])
