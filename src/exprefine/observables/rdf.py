"""Radial distribution function g_ab(r) with Gaussian-smoothed bins.

For species a and b in a periodic cell of volume V,

    g_ab(r) = V / (N_a N_b) · Σ_{i∈a} Σ_{j∈b, j≠i} δ(r − r_ij) / (4π r²),

which tends to 1 at large r in a liquid and equals 1 (up to the factor
(N_b − δ_ab)/N_b of excluding i itself) for an ideal gas. ``species=None`` is the
total, unweighted g(r) over all atoms. The bins, the Gaussian kernel, the ideal-gas
bin volumes and the cell check are those of :class:`~exprefine.observables.binning.RadialBinning`;
each frame is normalised with its own volume.
"""

from __future__ import annotations

import torch

from ..neighbors import build_pairs
from ..potentials.base import Potential, atomic_number, element_symbols
from ..state import State
from ..trajectory import Trajectory
from .binning import (
    DEFAULT_N_BINS,
    KERNEL_HALF_WIDTH_SIGMAS,
    RadialBinning,
    RadialObservable,
    check_species_present,
    smoothed_shell_volumes_A3,
)

__all__ = ["DEFAULT_N_BINS", "KERNEL_HALF_WIDTH_SIGMAS", "RadialDistribution", "smoothed_shell_volumes_A3"]


class RadialDistribution(RadialObservable):
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
        if species is None:
            self.species: tuple[str, str] | None = None
            self._z: tuple[int, int] | None = None
            self.name = "rdf"
        else:
            if len(species) != 2:
                raise ValueError(f"species must be a pair of element symbols, got {species!r}")
            self._z = (atomic_number(species[0]), atomic_number(species[1]))
            self.species = (element_symbols([self._z[0]])[0], element_symbols([self._z[1]])[0])
            self.name = f"rdf_{self.species[0]}_{self.species[1]}"
        self.binning = RadialBinning(r_max_A, n_bins, bin_width_A, r_min_A, smoothing_A, name=self.name)

    # ------------------------------------------------------------- grid
    @property
    def r_max_A(self) -> float:
        return self.binning.r_max_A

    @property
    def r_min_A(self) -> float:
        return self.binning.r_min_A

    @property
    def n_bins(self) -> int:
        return self.binning.n_bins

    @property
    def bin_width_A(self) -> float:
        return self.binning.bin_width_A

    @property
    def smoothing_A(self) -> float:
        return self.binning.smoothing_A

    @property
    def pair_cutoff_A(self) -> float:
        """Å: the neighbour-list cutoff, r_max plus the reach of the kernel."""
        return self.binning.pair_cutoff_A

    def bin_edges(self) -> torch.Tensor:
        """[n_bins + 1] bin edges in Å (float64)."""
        return self.binning.bin_edges()

    # ------------------------------------------------------------ checks
    def check(self, trajectory: Trajectory) -> None:
        """Refuse non-periodic frames, r_max beyond half a cell height, absent species."""
        super().check(trajectory)
        if self._z is not None:
            check_species_present(self.name, self._z, trajectory.atomic_numbers)

    # ------------------------------------------------------------ values
    def per_frame(self, frames: State, potential: Potential | None = None) -> torch.Tensor:
        """[n_frames, n_bins] g(r) of each frame (dimensionless, dtype of the positions)."""
        self.binning.check_cells(frames.cell, frames.pbc)
        n_frames = frames.n_systems
        dtype, device = frames.dtype, frames.device
        z = frames.atomic_numbers
        if self._z is None:
            in_a = torch.ones_like(z, dtype=torch.bool)
            in_b = in_a
        else:
            check_species_present(self.name, self._z, z)
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
        dist = pairs.vectors(frames.positions, frames.cell)[keep].norm(dim=-1)
        counts = self.binning.smoothed_counts(dist, pairs.system[keep], n_frames)  # [n_frames, n_bins]
        ideal = self.binning.ideal_shell_volumes_A3.to(dtype=dtype, device=device)
        # g_k = multiplicity · C_k · V / (N_a N_b · V'_k)
        scale = multiplicity * frames.volume_A3() / (n_a * n_b)
        return counts * scale[:, None] / ideal[None, :]
