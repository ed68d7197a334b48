"""A learnable pairwise dispersion term: rationally damped C6/r⁶ and C8/r⁸ per species pair.

For every unordered species pair ab,

    φ_ab(r) = −[s6·C6_ab / (r⁶ + R_ab⁶) + s8·C8_ab / (r⁸ + R_ab⁸)] · s(r),

the two-body form of Grimme's D3 with Becke–Johnson (rational) damping, with one damping
radius R_ab per pair instead of D3's a1·√(C8/C6) + a2, and fixed (environment-independent)
coefficients. The global scales s6 and s8 (1 by default) are D3's own fit parameters: with
C6, C8 and R fixed at physical values (:func:`~exprefine.potentials.dftd3.d3_pair_coefficients`)
and only ``s6``/``s8`` trainable, a refinement can only rescale a dispersion term of the right
shape, which structure data determine far better than free per-pair coefficients.
s(r) switches the term off smoothly between ``switch_on_A`` and the cutoff r_c:

    s = 1 − 10x³ + 15x⁴ − 6x⁵,   x = (r − r_on)/(r_c − r_on) ∈ [0, 1],

so energy, force and force derivative are continuous everywhere (s = 1 below r_on, 0 beyond
r_c). C6 (eV·Å⁶) and C8 (eV·Å⁸) are stored as they are, so the term may start at exactly zero
and a Gauss–Newton step is linear in them; the damping radius is stored as its logarithm
(positive, relative steps). Added to any model (an MLIP trained on dispersion-free labels) it
is the physically shaped correction a refinement against structure data can learn.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .base import PairPotential, element_symbols
from .lennard_jones import _per_pair

#: Which parameter groups train: names accepted in ``trainable``.
DISPERSION_PARAMETERS = ("c6", "c8", "damping_radius", "s6", "s8")


class PairDispersion(PairPotential):
    """−(s6·C6/(r⁶ + R⁶) + s8·C8/(r⁸ + R⁸))·s(r) per species pair, s switching off smoothly.

    Args:
        species: elements, e.g. ``["C", "N"]``.
        c6_eV_A6: C6 in eV·Å⁶, one value for all pairs or one per unordered species pair
            (upper triangle, row-major: for species [A, B]: AA, AB, BB); 0 by default.
        c8_eV_A8: C8 in eV·Å⁸, same layout; 0 by default.
        damping_radius_A: R in Å (> 0), same layout.
        cutoff_A: r_c, where the term reaches zero, Å.
        switch_on_A: r_on < r_c, where the switching starts (default r_c − 2 Å).
        s6, s8: global dimensionless scales of the C6 and C8 terms (1 by default).
        trainable: the groups that train, from ``("c6", "c8", "damping_radius", "s6", "s8")``;
            True for C6, C8 and R (the scales are redundant with free coefficients), False for none.
    """

    def __init__(
        self,
        species: Sequence[str | int],
        cutoff_A: float,
        c6_eV_A6: float | Sequence[float] = 0.0,
        c8_eV_A8: float | Sequence[float] = 0.0,
        damping_radius_A: float | Sequence[float] = 3.5,
        switch_on_A: float | None = None,
        trainable: bool | Sequence[str] = True,
        s6: float = 1.0,
        s8: float = 1.0,
    ) -> None:
        super().__init__(species, cutoff_A)
        switch_on = self.cutoff_A - 2.0 if switch_on_A is None else float(switch_on_A)
        if not (0.0 < switch_on < self.cutoff_A and math.isfinite(self.cutoff_A)):
            raise ValueError(f"need 0 < switch_on_A < cutoff_A, got switch_on_A={switch_on}, cutoff_A={self.cutoff_A}")
        self.switch_on_A = switch_on
        groups = _trainable_groups(trainable)
        n = self.n_pairs_of_species
        self.c6_eV_A6 = nn.Parameter(_finite_per_pair(c6_eV_A6, n, "c6_eV_A6"), requires_grad="c6" in groups)
        self.c8_eV_A8 = nn.Parameter(_finite_per_pair(c8_eV_A8, n, "c8_eV_A8"), requires_grad="c8" in groups)
        self.log_damping_radius = nn.Parameter(torch.log(_per_pair(damping_radius_A, n, "damping_radius_A")),
                                               requires_grad="damping_radius" in groups)
        self.s6 = nn.Parameter(_finite_per_pair(s6, 1, "s6"), requires_grad="s6" in groups)
        self.s8 = nn.Parameter(_finite_per_pair(s8, 1, "s8"), requires_grad="s8" in groups)

    @property
    def damping_radius_A(self) -> torch.Tensor:
        """[n_species_pairs] R in Å."""
        return self.log_damping_radius.exp()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        # files written before s6/s8 existed hold C6, C8 and R only: their scales were 1
        for name in ("s6", "s8"):
            state_dict.setdefault(prefix + name, torch.ones(1, dtype=torch.float64))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def switching(self, r_A: torch.Tensor) -> torch.Tensor:
        """s(r): 1 below ``switch_on_A``, 0 beyond the cutoff, a quintic (C²) in between."""
        x = ((r_A - self.switch_on_A) / (self.cutoff_A - self.switch_on_A)).clamp(0.0, 1.0)
        return 1.0 - x**3 * (10.0 - 15.0 * x + 6.0 * x * x)

    def pair_energy(self, r_A: torch.Tensor, pair_type: torch.Tensor) -> torch.Tensor:
        c6 = self.c6_eV_A6.to(r_A.dtype)[pair_type]
        c8 = self.c8_eV_A8.to(r_A.dtype)[pair_type]
        radius = self.damping_radius_A.to(r_A.dtype)[pair_type]
        r2 = r_A * r_A
        r6 = r2 * r2 * r2
        r8 = r6 * r2
        radius2 = radius * radius
        radius6 = radius2 * radius2 * radius2
        s6 = self.s6.to(r_A.dtype)
        s8 = self.s8.to(r_A.dtype)
        damped = s6 * c6 / (r6 + radius6) + s8 * c8 / (r8 + radius6 * radius2)
        return -damped * self.switching(r_A)

    def table(self, r_A: torch.Tensor) -> torch.Tensor:
        """[n_species_pairs, len(r_A)] φ_ab(r) in eV (0 beyond the cutoff), for plots and tables."""
        r = torch.as_tensor(r_A, dtype=self.c6_eV_A6.dtype).reshape(-1)
        rows = torch.arange(self.n_pairs_of_species)[:, None].expand(-1, r.shape[0])
        values = self.pair_energy(r.expand(self.n_pairs_of_species, -1), rows)
        return torch.where(r < self.cutoff_A, values, torch.zeros_like(values))

    def summary(self) -> dict[str, float]:
        """s6, s8, and C6 (eV·Å⁶), C8 (eV·Å⁸) and R (Å) of every species pair, for logs."""
        out = {"s6": float(self.s6.detach()), "s8": float(self.s8.detach())}
        for k, name in enumerate(self.species_pair_names()):
            out[f"c6_eV_A6[{name}]"] = float(self.c6_eV_A6[k].detach())
            out[f"c8_eV_A8[{name}]"] = float(self.c8_eV_A8[k].detach())
            out[f"damping_radius_A[{name}]"] = float(self.damping_radius_A[k].detach())
        return out

    def extra_repr(self) -> str:
        return (f"species={element_symbols(self.species_numbers)}, cutoff_A={self.cutoff_A}, "
                f"switch_on_A={self.switch_on_A}")


def _trainable_groups(trainable: bool | Sequence[str]) -> set[str]:
    if trainable is True:
        return {"c6", "c8", "damping_radius"}
    if trainable is False:
        return set()
    groups = {str(g) for g in trainable}
    unknown = sorted(groups - set(DISPERSION_PARAMETERS))
    if unknown:
        raise ValueError(f"trainable: unknown parameter group(s) {unknown}; choose from {list(DISPERSION_PARAMETERS)}")
    return groups


def _finite_per_pair(value: float | Sequence[float], n: int, name: str) -> torch.Tensor:
    values = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
    if values.numel() == 1:
        values = values.expand(n).clone()
    if values.numel() != n:
        raise ValueError(f"{name}: expected 1 or {n} values (one per species pair), got {values.numel()}")
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"{name} must be finite, got {values.tolist()}")
    return values
