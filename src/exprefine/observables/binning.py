"""Radial binning shared by every pair-distance observable: g(r), the total g(r), G(r) and S(Q).

Bins [lo_k, hi_k) from r_min to r_max; every pair distance d is spread with a Gaussian kernel of
width σ (``smoothing_A``), integrated exactly over each bin with erf, so the smoothed count of
bin k is

    C_k = Σ_pairs ½[erf((hi_k − d)/√2σ) − erf((lo_k − d)/√2σ)].

The ideal-gas volume of a bin after the same smoothing is (4π/3)[G(hi_k) − G(lo_k)] with
G(x) = E[(x − ε)₊³], ε ~ N(0, σ²) (:func:`smoothed_shell_volumes_A3`): dividing by it makes an
ideal gas give exactly 1 in every bin, also next to r = 0 where the kernel is cut by d > 0.
The cell check refuses frames whose cells are not periodic or too thin for r_max
(:func:`~exprefine.observables.base.check_cell_heights`).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ..potentials.base import element_symbols
from ..trajectory import Trajectory
from .base import Observable, check_cell_heights

#: Gaussian kernels are cut at this many σ (the mass beyond is < 6e-7).
KERNEL_HALF_WIDTH_SIGMAS = 5.0

#: Number of bins when neither ``n_bins`` nor ``bin_width_A`` is given.
DEFAULT_N_BINS = 200


class RadialBinning:
    """Bins r_min … r_max with a Gaussian kernel, their ideal-gas volumes and the cell check.

    Args:
        r_max_A: upper edge of the last bin, Å; at most half the smallest cell height of any frame.
        n_bins: number of bins (default 200 when ``bin_width_A`` is not given).
        bin_width_A: bin width, Å, alternative to ``n_bins``; (r_max − r_min) must be a whole
            number of bins.
        r_min_A: lower edge of the first bin, Å.
        smoothing_A: Gaussian σ, Å; default one bin width; 0 gives a plain histogram.
        name: the observable's name, for messages.
    """

    def __init__(
        self,
        r_max_A: float,
        n_bins: int | None = None,
        bin_width_A: float | None = None,
        r_min_A: float = 0.0,
        smoothing_A: float | None = None,
        name: str = "g(r)",
    ) -> None:
        r_max_A = float(r_max_A)
        r_min_A = float(r_min_A)
        if not (math.isfinite(r_min_A) and r_min_A >= 0.0):
            raise ValueError(f"r_min_A must be finite and ≥ 0 Å, got {r_min_A}")
        if not (math.isfinite(r_max_A) and r_max_A > r_min_A):
            raise ValueError(f"r_max_A must be finite and larger than r_min_A = {r_min_A} Å, got {r_max_A}")
        span = r_max_A - r_min_A
        if n_bins is not None and bin_width_A is not None:
            raise ValueError("give either n_bins or bin_width_A, not both")
        if bin_width_A is not None:
            if not (math.isfinite(bin_width_A) and bin_width_A > 0):
                raise ValueError(f"bin_width_A must be positive, got {bin_width_A}")
            n_float = span / bin_width_A
            n_bins = int(round(n_float))
            if n_bins < 1 or abs(n_float - n_bins) > 1e-6 * max(1.0, n_float):
                raise ValueError(
                    f"bin_width_A = {bin_width_A} Å does not divide r_max_A − r_min_A = {span} Å into whole bins"
                )
        elif n_bins is None:
            n_bins = DEFAULT_N_BINS
        if int(n_bins) != n_bins or n_bins < 1:
            raise ValueError(f"n_bins must be a positive integer, got {n_bins}")
        self.name = name
        self.r_max_A = r_max_A
        self.r_min_A = r_min_A
        self.n_bins = int(n_bins)
        self.bin_width_A = span / self.n_bins
        if smoothing_A is None:
            smoothing_A = self.bin_width_A
        if not (math.isfinite(smoothing_A) and smoothing_A >= 0.0):
            raise ValueError(f"smoothing_A must be finite and ≥ 0 Å, got {smoothing_A}")
        self.smoothing_A = float(smoothing_A)
        self._edges = torch.linspace(r_min_A, r_max_A, self.n_bins + 1, dtype=torch.float64)
        #: [n_bins] ideal-gas volume of each bin after the smoothing, Å³ (float64)
        self.ideal_shell_volumes_A3 = smoothed_shell_volumes_A3(self._edges, self.smoothing_A)

    @property
    def pair_cutoff_A(self) -> float:
        """Å: the neighbour-list cutoff, r_max plus the reach of the kernel."""
        return self.r_max_A + KERNEL_HALF_WIDTH_SIGMAS * self.smoothing_A

    def bin_edges(self) -> torch.Tensor:
        """[n_bins + 1] bin edges in Å (float64)."""
        return self._edges.clone()

    def grid(self) -> torch.Tensor:
        """[n_bins] bin centres in Å (float64)."""
        return 0.5 * (self._edges[1:] + self._edges[:-1])

    def check_cells(self, cells: torch.Tensor, pbc: torch.Tensor) -> None:
        """Refuse cells that are not periodic in all three directions or thinner than 2·r_max."""
        if not bool(torch.as_tensor(pbc).all()):
            raise ValueError(f"{self.name}: needs cells periodic in all three directions, "
                             f"got pbc={torch.as_tensor(pbc).tolist()}")
        check_cell_heights(self.name, self.r_max_A, cells)

    def smoothed_counts(self, dist: torch.Tensor, group: torch.Tensor, n_groups: int) -> torch.Tensor:
        """[n_groups, n_bins] kernel-weighted counts of the distances ``dist`` [P] (Å) in their ``group`` [P]."""
        dtype, device = dist.dtype, dist.device
        width = self.bin_width_A
        n_bins = self.n_bins
        flat = torch.zeros(n_groups * n_bins, dtype=dtype, device=device)
        if dist.numel() == 0:
            return flat.view(n_groups, n_bins)
        if self.smoothing_A == 0.0:
            k = torch.floor((dist - self.r_min_A) / width).long()
            ok = (k >= 0) & (k < n_bins) & (dist >= self.r_min_A) & (dist < self.r_max_A)
            flat.index_add_(0, group[ok] * n_bins + k[ok], torch.ones_like(dist[ok]))
            return flat.view(n_groups, n_bins)
        sigma = self.smoothing_A
        reach = KERNEL_HALF_WIDTH_SIGMAS * sigma
        n_window = int(math.ceil(2.0 * reach / width)) + 2
        first = torch.floor((dist - reach - self.r_min_A) / width).long()  # [P]
        k = first[:, None] + torch.arange(n_window, device=device)[None, :]  # [P, W]
        lo = self.r_min_A + k.to(dtype) * width
        scale = 1.0 / (math.sqrt(2.0) * sigma)
        d = dist[:, None]
        weight = 0.5 * (torch.erf((lo + width - d) * scale) - torch.erf((lo - d) * scale))
        ok = (k >= 0) & (k < n_bins)
        index = (group[:, None] * n_bins + k)[ok]
        flat.index_add_(0, index, weight[ok])
        return flat.view(n_groups, n_bins)


class RadialObservable(Observable):
    """An observable on the r bins of a :class:`RadialBinning` (its grid, axis label and cell check)."""

    binning: RadialBinning

    def grid(self) -> torch.Tensor:
        """[n_bins] bin centres in Å (float64)."""
        return self.binning.grid()

    def grid_label(self) -> str:
        return "r (Å)"

    def check(self, trajectory: Trajectory) -> None:
        """Refuse non-periodic frames and r_max beyond half a cell height."""
        self.binning.check_cells(trajectory.cells_A, trajectory.pbc)


def check_species_present(name: str, atomic_numbers: Sequence[int], present_in: torch.Tensor) -> None:
    """A one-line ValueError naming the first of ``atomic_numbers`` absent from ``present_in`` (the frames')."""
    present = set(int(z) for z in torch.unique(present_in).tolist())
    for z in atomic_numbers:
        if int(z) not in present:
            raise ValueError(
                f"{name}: species {element_symbols([int(z)])[0]} is absent from the frames "
                f"(elements present: {', '.join(element_symbols(sorted(present)))})"
            )


def smoothed_shell_volumes_A3(edges_A: torch.Tensor, sigma_A: float) -> torch.Tensor:
    """[n_bins] ideal-gas volume of each bin after Gaussian smoothing, Å³.

    V'_k = ∫_0^∞ 4π d² P(lo_k ≤ d + ε < hi_k) dd with ε ~ N(0, σ²), which equals
    (4π/3)[G(hi_k) − G(lo_k)] with G(x) = E[(x − ε)₊³]; for Y ~ N(x, σ²),
    E[Y₊³] = (x³ + 3xσ²) Φ(x/σ) + (x²σ + 2σ³) φ(x/σ). For σ = 0: 4π/3 (hi³ − lo³).

    Args:
        edges_A: [n_bins + 1] increasing bin edges, Å.
        sigma_A: Gaussian σ, Å (≥ 0).
    """
    x = edges_A.to(torch.float64)
    if sigma_A == 0.0:
        g = x.clamp(min=0.0) ** 3
    else:
        s = float(sigma_A)
        t = x / s
        cdf = 0.5 * (1.0 + torch.erf(t / math.sqrt(2.0)))
        pdf = torch.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi)
        g = (x**3 + 3.0 * x * s * s) * cdf + (x * x * s + 2.0 * s**3) * pdf
    return (4.0 * math.pi / 3.0) * (g[1:] - g[:-1])
