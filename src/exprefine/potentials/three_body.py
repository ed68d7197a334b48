"""Stillinger–Weber three-body term: an angular penalty on triplets of close neighbours.

For every centre atom i and every unordered pair {j, k} of its neighbours closer than
the cutoff aσ (j, k distinct neighbours; periodic images count as distinct neighbours),

    E = Σ_i Σ_{j<k ∈ N(i)} λε (cos θ_jik − cos θ₀)² · f(r_ij) · f(r_ik),
    f(r) = exp(γσ / (r − aσ))  for r < aσ,   f(r) = 0  for r ≥ aσ,

with cos θ_jik = r_ij·r_ik / (|r_ij| |r_ik|) (r_ij the vector from i to j). f and all
its derivatives vanish at r → aσ, so energy and forces are smooth at the cutoff
(Stillinger & Weber, Phys. Rev. B 31, 5262 (1985); with θ₀ = 109.47°, a = 1.8 and
γ = 1.2 the mW water model of Molinero & Moore, J. Phys. Chem. B 113, 4008 (2009)).

Parameterisation. λ and ε enter only as the product λε, so one parameter carries
both. The trainable parameters are

* ``log_lambda_epsilon`` = ln(λε / eV): positive strength, steps are relative changes;
* ``cos_theta0`` = cos θ₀: the energy is quadratic in it, which keeps a Gauss–Newton
  or Adam step well scaled (values outside [−1, 1] are allowed: the minimum of the
  penalty then sits at θ = 180° or 0°);
* ``log_gamma`` = ln γ: ln f(r) = γσ/(r − aσ) is linear in γ.

σ (Å) and a (the cutoff is aσ) are fixed: they set the range of the term and the
neighbour list.

Evaluation. No triplet is enumerated: with u_j = r_ij/|r_ij| and f_j = f(r_ij), the sum
over the neighbour pairs of a centre follows from four neighbour moments (see
:func:`angular_energy`), so the cost grows with the number of pairs, not of triplets.

Species. The term acts on the triplets whose three atoms all belong to ``species``;
atoms of other elements are ignored (neither centre nor neighbour), so e.g. an O–O–O
term can sit next to hydrogen atoms. One parameter set serves all listed species,
which is what a one-species coarse-grained model (one-site water) needs; a term per
species triple can be had by summing several instances with one species each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import nn

from ..neighbors import PairList, VerletPairCache
from ..state import State
from ..units import kJ_PER_MOL_IN_eV
from .base import Potential, atomic_number, element_symbols, species_index_table

#: The names of the trainable parameters, as ``trainable`` may list them.
THREE_BODY_PARAMETERS = ("lambda_epsilon", "cos_theta0", "gamma")

#: f(r) is evaluated at r − aσ ≤ −this (Å): keeps γσ/(r − aσ) finite (f is 0 there anyway).
_CUTOFF_GUARD_A = 1e-6


class StillingerWeberThreeBody(Potential):
    """Stillinger–Weber three-body energy with trainable strength, angle and decay.

    Args:
        species: elements whose triplets the term acts on, e.g. ``["O"]``.
        lambda_epsilon_eV: λε, the strength in eV (> 0).
        cos_theta0: cos θ₀ of the favoured angle (−1/3 for tetrahedral).
        gamma: γ, the decay of f(r) towards the cutoff (> 0, dimensionless).
        sigma_A: σ in Å (> 0, fixed).
        a: cutoff in units of σ (> 0, fixed); neighbours interact for r < aσ.
        trainable: True (all three parameters), False, or the names of those to train
            out of ``("lambda_epsilon", "cos_theta0", "gamma")``.
    """

    _species_of_z: torch.Tensor

    def __init__(
        self,
        species: Sequence[str | int],
        lambda_epsilon_eV: float,
        cos_theta0: float,
        gamma: float,
        sigma_A: float,
        a: float,
        trainable: bool | Iterable[str] = True,
    ) -> None:
        super().__init__()
        numbers = [atomic_number(s) for s in species]
        if not numbers or len(set(numbers)) != len(numbers):
            raise ValueError(f"species must list distinct elements, got {list(species)}")
        for name, value in (("lambda_epsilon_eV", lambda_epsilon_eV), ("gamma", gamma), ("sigma_A", sigma_A),
                            ("a", a)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive and finite, got {value}")
        if not math.isfinite(cos_theta0):
            raise ValueError(f"cos_theta0 must be finite, got {cos_theta0}")
        train = _trainable_names(trainable)
        self.species_numbers = numbers
        self.sigma_A = float(sigma_A)
        self.a = float(a)
        self.cutoff_A = self.a * self.sigma_A
        self.register_buffer("_species_of_z", species_index_table(numbers), persistent=False)
        self.log_lambda_epsilon = nn.Parameter(torch.tensor(math.log(lambda_epsilon_eV), dtype=torch.float64),
                                               requires_grad="lambda_epsilon" in train)
        self.cos_theta0 = nn.Parameter(torch.tensor(float(cos_theta0), dtype=torch.float64),
                                       requires_grad="cos_theta0" in train)
        self.log_gamma = nn.Parameter(torch.tensor(math.log(gamma), dtype=torch.float64),
                                      requires_grad="gamma" in train)
        self.pair_cache = VerletPairCache(skin_A=1.0)

    # ------------------------------------------------------------ parameters
    @property
    def lambda_epsilon_eV(self) -> torch.Tensor:
        """λε in eV (0-d)."""
        return self.log_lambda_epsilon.exp()

    @property
    def gamma(self) -> torch.Tensor:
        """γ (0-d, dimensionless)."""
        return self.log_gamma.exp()

    def summary(self) -> dict[str, float]:
        """λε (eV and kJ/mol), θ₀ (degrees), cos θ₀ and γ, for logs."""
        lam_eps = float(self.lambda_epsilon_eV.detach())
        cos0 = float(self.cos_theta0.detach())
        theta0 = math.degrees(math.acos(min(1.0, max(-1.0, cos0))))
        return {
            "lambda_epsilon_eV": lam_eps,
            "lambda_epsilon_kJ_per_mol": lam_eps / kJ_PER_MOL_IN_eV,
            "cos_theta0": cos0,
            "theta0_deg": theta0,
            "gamma": float(self.gamma.detach()),
        }

    # ------------------------------------------------------------ evaluation
    def energy(self, state: State) -> torch.Tensor:
        return self.energy_from_pairs(state, self.pair_cache.pairs(state, self.cutoff_A))

    def energy_from_pairs(self, state: State, pairs: PairList) -> torch.Tensor:
        """[n_systems] energy in eV from a half pair list that holds every pair closer than aσ.

        Evaluated through the neighbour moments of each centre (no loop over triplets).
        """
        dtype = state.dtype
        vectors = pairs.vectors(state.positions, state.cell)
        r = vectors.norm(dim=-1)
        ours = self._member(state.atomic_numbers)
        keep = (r < self.cutoff_A) & ours[pairs.i] & ours[pairs.j]
        i, j, r = pairs.i[keep], pairs.j[keep], r[keep]
        unit = vectors[keep] / r[:, None]
        gamma_sigma = self.gamma.to(dtype) * self.sigma_A
        radial = torch.exp(gamma_sigma / (r - self.cutoff_A).clamp(max=-_CUTOFF_GUARD_A))
        moments = neighbour_moments(i, j, unit, radial, state.n_atoms)
        per_atom = angular_energy(moments, self.lambda_epsilon_eV.to(dtype), self.cos_theta0.to(dtype))
        energy = torch.zeros(state.n_systems, dtype=dtype, device=state.device)
        return energy.index_add(0, state.system_idx, per_atom)

    def _member(self, atomic_numbers: torch.Tensor) -> torch.Tensor:
        """[n_atoms] True for atoms of the listed species."""
        z = atomic_numbers.clamp(0, 118)
        return self._species_of_z.to(z.device)[z] >= 0

    def extra_repr(self) -> str:
        return (f"species={element_symbols(self.species_numbers)}, sigma_A={self.sigma_A}, a={self.a}, "
                f"cutoff_A={self.cutoff_A:.4g}")


@dataclass
class NeighbourMoments:
    """Sums over the neighbours j of every centre atom i, weighted by f_j = f(r_ij).

    Attributes:
        s: [n_atoms] s_i = Σ_j f_j.
        q: [n_atoms] q_i = Σ_j f_j².
        v: [n_atoms, 3] v_i = Σ_j f_j u_j (u_j = r_ij/|r_ij|).
        t: [n_atoms, 3, 3] T_i = Σ_j f_j u_j ⊗ u_j.
    """

    s: torch.Tensor
    q: torch.Tensor
    v: torch.Tensor
    t: torch.Tensor


def neighbour_moments(
    i: torch.Tensor, j: torch.Tensor, unit: torch.Tensor, weight: torch.Tensor, n_atoms: int
) -> NeighbourMoments:
    """Weighted neighbour moments from a half pair list.

    Each pair (i, j) makes j a neighbour of i (direction u) and i a neighbour of j
    (direction −u), with the same weight: s, q and T get the pair twice, v with
    opposite signs.

    Args:
        i, j: [n_pairs] atom indices of a half list (periodic images are separate pairs).
        unit: [n_pairs, 3] unit vectors from i to j.
        weight: [n_pairs] f(r_ij).
        n_atoms: number of atoms of the batch.
    """
    dtype, device = unit.dtype, unit.device
    centre = torch.cat([i, j])
    w = torch.cat([weight, weight])
    u = torch.cat([unit, -unit])
    s = torch.zeros(n_atoms, dtype=dtype, device=device).index_add(0, centre, w)
    q = torch.zeros(n_atoms, dtype=dtype, device=device).index_add(0, centre, w * w)
    v = torch.zeros(n_atoms, 3, dtype=dtype, device=device).index_add(0, centre, w[:, None] * u)
    outer = (weight[:, None, None] * unit[:, :, None] * unit[:, None, :]).repeat(2, 1, 1)
    t = torch.zeros(n_atoms, 3, 3, dtype=dtype, device=device).index_add(0, centre, outer)
    return NeighbourMoments(s=s, q=q, v=v, t=t)


def angular_energy(m: NeighbourMoments, lambda_epsilon: torch.Tensor, cos_theta0: torch.Tensor) -> torch.Tensor:
    """[n_atoms] E_i = λε Σ_{j<k} (cos θ_jik − c₀)² f_j f_k from the neighbour moments (c₀ = cos θ₀).

    With cos θ_jik = u_j·u_k, the sum over ordered pairs j, k (j = k included) is
    Σ_jk f_j f_k [(u_j·u_k)² − 2c₀ u_j·u_k + c₀²] = ‖T‖² − 2c₀‖v‖² + c₀² s²; the
    diagonal j = k adds (1 − c₀)² q, and each unordered pair appears twice:

        E_i = (λε/2) [‖T_i‖²_F − 2c₀ ‖v_i‖² + c₀² s_i² − (1 − c₀)² q_i].

    The cost is linear in the number of pairs. The terms cancel to the energy, so its
    rounding error is ≈ 1e-16 · λε s_i² (float64) rather than relative to E_i.
    """
    c = cos_theta0
    bracket = (m.t * m.t).sum(dim=(1, 2)) - 2.0 * c * (m.v * m.v).sum(dim=1) + c * c * m.s * m.s \
        - (1.0 - c) ** 2 * m.q
    return 0.5 * lambda_epsilon * bracket


def _trainable_names(trainable: bool | Iterable[str]) -> set[str]:
    if trainable is True:
        return set(THREE_BODY_PARAMETERS)
    if trainable is False:
        return set()
    names = set(trainable)
    unknown = names - set(THREE_BODY_PARAMETERS)
    if unknown:
        raise ValueError(f"trainable: unknown parameter(s) {sorted(unknown)}; choose from {THREE_BODY_PARAMETERS}")
    return names
