"""Tabulated pair potential: a cubic spline through trainable knot values.

For every unordered species pair ab, φ_ab(r) is the cubic spline through the knots
(r_k, y_ab,k) with r_k = r_min + k·h, h = (r_c − r_min)/(n_knots − 1), k = 0 … n_knots−1.
The last knot sits at the cutoff r_c and is fixed to y = 0; the first n_knots − 1
values (eV) are the trainable parameters.

Boundary conditions (the spline is C² between r_min and r_c):

* at the cutoff, by default zero slope (clamped, φ'(r_c) = 0), so that energy *and*
  force go continuously to zero there (needed for energy conservation in MD);
  ``boundary_at_cutoff="natural"`` imposes φ''(r_c) = 0 instead (energy continuous,
  force jumps at r_c);
* at r_min, natural: φ''(r_min) = 0.

Below r_min the value stays constant at φ(r_min) (zero force): choose r_min below
any distance the simulation can reach. Beyond the cutoff φ = 0.

With second derivatives M_k at the knots, on [r_k, r_k+1] and t = (r − r_k)/h:

    φ(r) = (1−t)·y_k + t·y_k+1 + h²/6·[((1−t)³ − (1−t))·M_k + (t³ − t)·M_k+1]

The boundary conditions and continuity of φ' give a tridiagonal system T·M = B·y,
so M = D·y with D = T⁻¹·B precomputed once (a buffer): φ is a linear,
differentiable function of the knot values.
"""

from __future__ import annotations

import math
from typing import Callable, Literal, Sequence

import numpy as np
import torch
from torch import nn

from .base import PairPotential, element_symbols

BoundaryAtCutoff = Literal["zero_slope", "natural"]


class PairSpline(PairPotential):
    """Cubic-spline pair potential with trainable knot values per species pair.

    Args:
        species: elements, e.g. ``["Ar"]`` or ``["Ar", "Kr"]``.
        cutoff_A: position of the last knot (fixed to 0 eV), Å.
        r_min_A: position of the first knot, Å; φ is constant below it.
        n_knots: number of knots including the one at the cutoff (≥ 3).
        initial_values_eV: values at the first ``n_knots − 1`` knots, shape
            [n_knots − 1] (same for every species pair) or [n_species_pairs, n_knots − 1]
            (upper triangle, row-major: for species [A, B]: AA, AB, BB); zeros if None.
        trainable: train the knot values.
        boundary_at_cutoff: ``"zero_slope"`` (φ'(r_c) = 0, default) or ``"natural"``
            (φ''(r_c) = 0).
    """

    _second_derivative_map: torch.Tensor

    def __init__(
        self,
        species: Sequence[str | int],
        cutoff_A: float,
        r_min_A: float,
        n_knots: int,
        initial_values_eV: Sequence[float] | np.ndarray | torch.Tensor | None = None,
        trainable: bool = True,
        boundary_at_cutoff: BoundaryAtCutoff = "zero_slope",
    ) -> None:
        super().__init__(species, cutoff_A)
        if not (0.0 <= r_min_A < cutoff_A and math.isfinite(cutoff_A)):
            raise ValueError(f"need 0 <= r_min_A < cutoff_A, got r_min_A={r_min_A}, cutoff_A={cutoff_A}")
        if int(n_knots) != n_knots or n_knots < 3:
            raise ValueError(f"n_knots must be an integer >= 3, got {n_knots}")
        if boundary_at_cutoff not in ("zero_slope", "natural"):
            raise ValueError(f"boundary_at_cutoff must be 'zero_slope' or 'natural', got {boundary_at_cutoff!r}")
        self.r_min_A = float(r_min_A)
        self.n_knots = int(n_knots)
        self.spacing_A = (self.cutoff_A - self.r_min_A) / (self.n_knots - 1)
        self.boundary_at_cutoff = boundary_at_cutoff
        d = second_derivative_map(self.n_knots, self.spacing_A, boundary_at_cutoff)
        self.register_buffer("_second_derivative_map", torch.from_numpy(d), persistent=False)
        values = _initial_values(initial_values_eV, self.n_pairs_of_species, self.n_knots)
        self.values_eV = nn.Parameter(values, requires_grad=trainable)

    # ----------------------------------------------------------- construction
    @classmethod
    def from_function(
        cls,
        species: Sequence[str | int],
        phi: Callable[[np.ndarray], np.ndarray] | Sequence[Callable[[np.ndarray], np.ndarray]],
        cutoff_A: float,
        r_min_A: float,
        n_knots: int,
        *,
        method: Literal["interpolate", "least_squares"] = "interpolate",
        trainable: bool = True,
        boundary_at_cutoff: BoundaryAtCutoff = "zero_slope",
    ) -> "PairSpline":
        """A spline that tabulates φ(r) − φ(r_c) (shifted to vanish at the cutoff).

        Args:
            phi: φ(r) taking an array of distances in Å and returning eV, used for every
                species pair, or a sequence of such callables, one per unordered species pair.
            method: ``"interpolate"`` puts the knot values on φ; ``"least_squares"``
                fits them to φ on a dense grid (16 points per interval), which spreads the
                error of a boundary condition φ does not satisfy.
        """
        spline = cls(species, cutoff_A, r_min_A, n_knots, trainable=trainable, boundary_at_cutoff=boundary_at_cutoff)
        n_pairs = spline.n_pairs_of_species
        functions = list(phi) if isinstance(phi, Sequence) else [phi] * n_pairs
        if len(functions) != n_pairs:
            raise ValueError(f"phi: expected 1 callable or {n_pairs} (one per species pair), got {len(functions)}")
        knots = spline.knots_A().numpy()
        if method == "interpolate":
            grid = knots
            design = None
        elif method == "least_squares":
            grid = np.linspace(spline.r_min_A, spline.cutoff_A, 16 * (spline.n_knots - 1) + 1)
            design = spline.basis(torch.from_numpy(grid)).numpy()[:, :-1]
        else:
            raise ValueError(f"method must be 'interpolate' or 'least_squares', got {method!r}")
        values = np.empty((n_pairs, spline.n_knots - 1))
        for p, f in enumerate(functions):
            target = np.asarray(f(grid), dtype=float) - float(np.asarray(f(np.array([spline.cutoff_A]))).reshape(-1)[0])
            if target.shape != grid.shape or not np.all(np.isfinite(target)):
                raise ValueError(f"phi for species pair {p} must return finite values of shape {grid.shape}")
            if design is None:
                values[p] = target[:-1]
            else:
                values[p] = np.linalg.lstsq(design, target, rcond=None)[0]
        with torch.no_grad():
            spline.values_eV.copy_(torch.from_numpy(values))
        return spline

    # ------------------------------------------------------------- evaluation
    def knots_A(self) -> torch.Tensor:
        """[n_knots] knot positions in Å (float64)."""
        return torch.linspace(self.r_min_A, self.cutoff_A, self.n_knots, dtype=torch.float64)

    def knot_values_eV(self) -> torch.Tensor:
        """[n_species_pairs, n_knots] values at all knots, the fixed zero at the cutoff included."""
        zero = torch.zeros_like(self.values_eV[:, :1])
        return torch.cat([self.values_eV, zero], dim=1)

    def pair_energy(self, r_A: torch.Tensor, pair_type: torch.Tensor) -> torch.Tensor:
        y = self.knot_values_eV().to(r_A.dtype)
        m = y @ self._second_derivative_map.to(r_A.dtype).T
        return evaluate_cubic_spline(y, m, r_A, pair_type, self.r_min_A, self.spacing_A)

    def table(self, r_A: torch.Tensor | np.ndarray | Sequence[float]) -> torch.Tensor:
        """[n_species_pairs, len(r_A)] φ_ab(r) in eV (0 at and beyond the cutoff), for plotting."""
        r = torch.as_tensor(r_A, dtype=self.values_eV.dtype, device=self.values_eV.device).reshape(-1)
        rows = torch.arange(self.n_pairs_of_species, device=r.device)[:, None].expand(-1, r.shape[0])
        values = self.pair_energy(r.expand(self.n_pairs_of_species, -1), rows)
        return torch.where(r < self.cutoff_A, values, torch.zeros_like(values))

    def basis(self, r_A: torch.Tensor) -> torch.Tensor:
        """[len(r_A), n_knots] W with φ(r) = W·y for the knot values y (float64); linear in y."""
        r = torch.as_tensor(r_A, dtype=torch.float64).reshape(-1)
        eye = torch.eye(self.n_knots, dtype=torch.float64)
        m = eye @ self._second_derivative_map.to(torch.float64).T
        cols = torch.arange(self.n_knots)[None, :].expand(r.shape[0], -1)
        return evaluate_cubic_spline(eye, m, r[:, None].expand(-1, self.n_knots), cols, self.r_min_A, self.spacing_A)

    def summary(self) -> dict[str, float]:
        """Minimum of φ_ab (eV), where it lies (Å) and max |φ_ab| (eV) per species pair, for logs."""
        r = torch.linspace(self.r_min_A, self.cutoff_A, 8 * (self.n_knots - 1) + 1, dtype=torch.float64)
        with torch.no_grad():
            table = self.table(r).double().cpu()
        out = {}
        for k, name in enumerate(self.species_pair_names()):
            k_min = int(table[k].argmin())
            out[f"min_eV[{name}]"] = float(table[k, k_min])
            out[f"r_of_min_A[{name}]"] = float(r[k_min])
            out[f"max_abs_eV[{name}]"] = float(table[k].abs().max())
        return out

    def extra_repr(self) -> str:
        return (
            f"species={element_symbols(self.species_numbers)}, r_min_A={self.r_min_A}, cutoff_A={self.cutoff_A}, "
            f"n_knots={self.n_knots}, boundary_at_cutoff={self.boundary_at_cutoff!r}"
        )


def second_derivative_map(n_knots: int, spacing_A: float, boundary_at_cutoff: BoundaryAtCutoff) -> np.ndarray:
    """[n_knots, n_knots] D with M = D·y: knot second derivatives (eV/Å²) from knot values (eV).

    Natural condition M_0 = 0 at r_min; at the cutoff either zero slope
    (h/6·M_n−2 + h/3·M_n−1 = (y_n−2 − y_n−1)/h) or natural (M_n−1 = 0).
    """
    n, h = n_knots, spacing_A
    t = np.zeros((n, n))
    b = np.zeros((n, n))
    t[0, 0] = 1.0
    for k in range(1, n - 1):
        t[k, k - 1 : k + 2] = (h / 6.0, 2.0 * h / 3.0, h / 6.0)
        b[k, k - 1 : k + 2] = (1.0 / h, -2.0 / h, 1.0 / h)
    if boundary_at_cutoff == "zero_slope":
        t[n - 1, n - 2 :] = (h / 6.0, h / 3.0)
        b[n - 1, n - 2 :] = (1.0 / h, -1.0 / h)
    else:
        t[n - 1, n - 1] = 1.0
    return np.linalg.solve(t, b)


def evaluate_cubic_spline(
    values_eV: torch.Tensor,
    second_derivatives: torch.Tensor,
    r_A: torch.Tensor,
    rows: torch.Tensor,
    r_min_A: float,
    spacing_A: float,
) -> torch.Tensor:
    """Cubic spline on equally spaced knots, evaluated row by row.

    Args:
        values_eV: [n_rows, n_knots] knot values y.
        second_derivatives: [n_rows, n_knots] knot second derivatives M (eV/Å²).
        r_A: [...] distances; clamped to [r_min, r_min + (n_knots−1)·h] (constant outside).
        rows: [...] (same shape) which row of the tables each distance uses.
        r_min_A, spacing_A: first knot and knot spacing h, Å.

    Returns:
        [...] spline values in eV.
    """
    n = values_eV.shape[1]
    x = (r_A.clamp(min=r_min_A, max=r_min_A + (n - 1) * spacing_A) - r_min_A) / spacing_A
    k = x.detach().floor().long().clamp(0, n - 2)
    t = x - k.to(x.dtype)
    a = 1.0 - t
    y0, y1 = values_eV[rows, k], values_eV[rows, k + 1]
    m0, m1 = second_derivatives[rows, k], second_derivatives[rows, k + 1]
    return a * y0 + t * y1 + (spacing_A**2 / 6.0) * ((a**3 - a) * m0 + (t**3 - t) * m1)


def _initial_values(
    initial_values_eV: Sequence[float] | np.ndarray | torch.Tensor | None, n_pairs: int, n_knots: int
) -> torch.Tensor:
    if initial_values_eV is None:
        return torch.zeros(n_pairs, n_knots - 1, dtype=torch.float64)
    if isinstance(initial_values_eV, torch.Tensor):
        values = initial_values_eV.detach().to(torch.float64).cpu().clone()
    else:
        values = torch.tensor(np.asarray(initial_values_eV, dtype=float))
    if values.ndim == 1:
        values = values.unsqueeze(0).expand(n_pairs, -1).clone()
    if values.shape != (n_pairs, n_knots - 1):
        raise ValueError(
            f"initial_values_eV: expected shape [{n_knots - 1}] or [{n_pairs}, {n_knots - 1}], got {tuple(values.shape)}"
        )
    if not bool(torch.isfinite(values).all()):
        raise ValueError("initial_values_eV must be finite")
    return values
