"""Radial distribution function g_ab(r) with Gaussian-smoothed bins.

For species a and b in a periodic cell of volume V,

    g_ab(r) = V / (N_a N_b) · Σ_{i∈a} Σ_{j∈b, j≠i} δ(r − r_ij) / (4π r²),

which tends to 1 at large r in a liquid and equals 1 (up to the factor
(N_b − δ_ab)/N_b of excluding i itself) for an ideal gas. ``species=None`` is the
total, unweighted g(r) over all atoms.

Binning: every pair distance d is spread with a Gaussian kernel of width σ
(``smoothing_A``), and the kernel is integrated exactly over each bin
[lo_k, hi_k) with erf, so the smoothed count of bin k is

    C_k = Σ_pairs ½[erf((hi_k − d)/√2σ) − erf((lo_k − d)/√2σ)].

The count is divided by what an ideal gas of the same density would put into the
bin after the same smoothing, (4π/3)[G(hi_k) − G(lo_k)] with
G(x) = E[(x − ε)₊³], ε ~ N(0, σ²) (closed form below; G(x) = x₊³ for σ = 0).
This makes an ideal gas give exactly 1 in every bin, also next to r = 0 where the
kernel is cut by d > 0; it differs from the plain shell volume 4π/3(hi³ − lo³) by
a relative σ²/r² only. Each frame is normalised with its own volume.
"""

from __future__ import annotations

import math

import torch

from ..neighbors import build_pairs
from ..potentials.base import Potential, atomic_number, element_symbols
from ..state import State
from ..trajectory import Trajectory
from .base import Observable, check_cell_heights

#: Gaussian kernels are cut at this many σ (the mass beyond is < 6e-7).
KERNEL_HALF_WIDTH_SIGMAS = 5.0

#: Number of bins when neither ``n_bins`` nor ``bin_width_A`` is given.
DEFAULT_N_BINS = 200


class RadialDistribution(Observable):
    """Partial or total radial distribution function on bins r_min … r_max.

    Args:
        r_max_A: upper edge of the last bin in Å; must not exceed half the smallest
            cell height of any frame.
        n_bins: number of bins (default 200 when ``bin_width_A`` is not given).
        bin_width_A: bin width in Å, alternative to ``n_bins``; (r_max − r_min) must
            be a whole number of bins.
        r_min_A: lower edge of the first bin in Å.
        smoothing_A: Gaussian σ in Å of the kernel each pair distance is spread with;
            default one bin width; 0 gives a plain histogram.
        species: (a, b) element symbols for the partial g_ab, or None for the total
            g(r) over all atoms.
    """

    unit = "1"
    depends_on_parameters = False

    def __init__(
        self,
        r_max_A: float,
        n_bins: int | None = None,
        bin_width_A: float | None = None,
        r_min_A: float = 0.0,
        smoothing_A: float | None = None,
        species: tuple[str, str] | None = None,
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
        self.r_max_A = r_max_A
        self.r_min_A = r_min_A
        self.n_bins = int(n_bins)
        self.bin_width_A = span / self.n_bins
        if smoothing_A is None:
            smoothing_A = self.bin_width_A
        if not (math.isfinite(smoothing_A) and smoothing_A >= 0.0):
            raise ValueError(f"smoothing_A must be finite and ≥ 0 Å, got {smoothing_A}")
        self.smoothing_A = float(smoothing_A)

        if species is None:
            self.species: tuple[str, str] | None = None
            self._z: tuple[int, int] | None = None
            self.name = "rdf"
        else:
            if len(species) != 2:
                raise ValueError(f"species must be a pair of element symbols, got {species!r}")
            self._z = (atomic_number(species[0]), atomic_number(species[1]))
            self.species = (
                element_symbols([self._z[0]])[0],
                element_symbols([self._z[1]])[0],
            )
            self.name = f"rdf_{self.species[0]}_{self.species[1]}"

        edges = torch.linspace(r_min_A, r_max_A, self.n_bins + 1, dtype=torch.float64)
        self._edges = edges
        self._ideal_shell_A3 = smoothed_shell_volumes_A3(edges, self.smoothing_A)

    # ------------------------------------------------------------- grid
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

    def grid_label(self) -> str:
        return "r (Å)"

    # ------------------------------------------------------------ checks
    def check(self, trajectory: Trajectory) -> None:
        """Refuse non-periodic frames, r_max beyond half a cell height, absent species."""
        self._check_cells(trajectory.cells_A, trajectory.pbc)
        if self._z is not None:
            self._check_species(trajectory.atomic_numbers)

    def _check_cells(self, cells: torch.Tensor, pbc: torch.Tensor) -> None:
        if not bool(torch.as_tensor(pbc).all()):
            raise ValueError(f"{self.name}: g(r) needs cells periodic in all three directions, got pbc={pbc.tolist()}")
        check_cell_heights(self.name, self.r_max_A, cells)

    def _check_species(self, atomic_numbers: torch.Tensor) -> None:
        assert self._z is not None and self.species is not None
        present = set(int(z) for z in torch.unique(atomic_numbers).tolist())
        for z, sym in zip(self._z, self.species):
            if z not in present:
                raise ValueError(
                    f"{self.name}: species {sym} is absent from the frames "
                    f"(elements present: {', '.join(element_symbols(sorted(present)))})"
                )

    # ------------------------------------------------------------ values
    def per_frame(self, frames: State, potential: Potential | None = None) -> torch.Tensor:
        """[n_frames, n_bins] g(r) of each frame (dimensionless, dtype of the positions)."""
        self._check_cells(frames.cell, frames.pbc)
        n_frames = frames.n_systems
        dtype, device = frames.dtype, frames.device
        z = frames.atomic_numbers
        if self._z is None:
            in_a = torch.ones_like(z, dtype=torch.bool)
            in_b = in_a
        else:
            self._check_species(z)
            in_a = z == self._z[0]
            in_b = z == self._z[1]
        n_a = torch.zeros(n_frames, dtype=dtype, device=device).index_add(0, frames.system_idx, in_a.to(dtype))
        n_b = torch.zeros(n_frames, dtype=dtype, device=device).index_add(0, frames.system_idx, in_b.to(dtype))
        if bool((n_a == 0).any() or (n_b == 0).any()):
            raise ValueError(f"{self.name}: a frame contains none of the requested species {self.species}")

        pairs = build_pairs(frames, self.pair_cutoff_A)
        # Half list: an unordered pair {i, j} appears once. Σ_{i∈a, j∈b, j≠i} counts it
        # twice when a == b (also for the total) and once when a ≠ b.
        same = self._z is None or self._z[0] == self._z[1]
        if same:
            keep = in_a[pairs.i] & in_a[pairs.j]
            multiplicity = 2.0
        else:
            keep = (in_a[pairs.i] & in_b[pairs.j]) | (in_b[pairs.i] & in_a[pairs.j])
            multiplicity = 1.0
        vec = pairs.vectors(frames.positions, frames.cell)[keep]
        dist = vec.norm(dim=-1)
        system = pairs.system[keep]

        counts = self._smoothed_counts(dist, system, n_frames)  # [n_frames, n_bins]
        volume = frames.volume_A3()
        ideal = self._ideal_shell_A3.to(dtype=dtype, device=device)
        # g_k = multiplicity · C_k · V / (N_a N_b · V'_k)
        scale = multiplicity * volume / (n_a * n_b)
        return counts * scale[:, None] / ideal[None, :]

    def _smoothed_counts(self, dist: torch.Tensor, system: torch.Tensor, n_frames: int) -> torch.Tensor:
        """[n_frames, n_bins] kernel-weighted pair counts of each frame."""
        dtype, device = dist.dtype, dist.device
        width = self.bin_width_A
        n_bins = self.n_bins
        flat = torch.zeros(n_frames * n_bins, dtype=dtype, device=device)
        if dist.numel() == 0:
            return flat.view(n_frames, n_bins)
        if self.smoothing_A == 0.0:
            k = torch.floor((dist - self.r_min_A) / width).long()
            ok = (k >= 0) & (k < n_bins) & (dist >= self.r_min_A) & (dist < self.r_max_A)
            flat.index_add_(0, system[ok] * n_bins + k[ok], torch.ones_like(dist[ok]))
            return flat.view(n_frames, n_bins)
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
        index = (system[:, None] * n_bins + k)[ok]
        flat.index_add_(0, index, weight[ok])
        return flat.view(n_frames, n_bins)


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
