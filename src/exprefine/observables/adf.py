"""Bond-angle distribution p(θ) of triplets j–i–k with both neighbours in a radial shell.

For a centre atom i of species A and two distinct neighbours j, k (species B and C, in
either order when B ≠ C) with r_min ≤ |r_ij|, |r_ik| < r_max, the angle at i is

    θ_jik = arccos( r_ij · r_ik / (|r_ij| |r_ik|) ) ∈ [0°, 180°].

Each unordered pair {j, k} of a centre counts once. Every frame gives a probability
density over [0°, 180°]: the Gaussian-smoothed count of each bin divided by the number
of triplets of that frame and by the bin width, so Σ_k p_k Δθ = 1. The kernel is
reflected at 0° and 180° (mass that would fall outside is folded back), so angles of
exactly 180° (collinear triplets) keep their full weight. Directions uniform on the
sphere give p(θ) = sin θ / 2 per radian (π sin θ / 360 per degree).
"""

from __future__ import annotations

import math

import torch

from ..neighbors import build_pairs
from ..potentials.base import Potential, atomic_number, element_symbols
from ..state import State
from ..trajectory import Trajectory
from .base import Observable, check_cell_heights
from .binning import KERNEL_HALF_WIDTH_SIGMAS, check_species_present

#: Angle units of the output: the factor from radians and the suffix of the name.
ANGLE_UNITS: dict[str, tuple[float, str]] = {"degree": (180.0 / math.pi, "deg"), "radian": (1.0, "rad")}


class AngularDistribution(Observable):
    """Bond-angle distribution of j–i–k triplets, a probability density per degree or per radian.

    Args:
        species: (B, A, C) element symbols: neighbour j, centre i, neighbour k
            (e.g. ("O", "O", "O"), or ("H", "O", "H") for the H–O–H angle).
        r_max_A: outer radius of the shell in Å (neighbours with |r| < r_max); must not
            exceed half the smallest cell height.
        r_min_A: inner radius of the shell in Å (neighbours with |r| ≥ r_min).
        n_bins: number of bins over [0°, 180°].
        smoothing_deg: Gaussian σ in degrees; default one bin width; 0 gives a plain histogram.
        angle_unit: "degree" or "radian": unit of the grid and of the density (1/unit).
    """

    depends_on_parameters = False

    def __init__(
        self,
        species: tuple[str, str, str],
        r_max_A: float,
        r_min_A: float = 0.0,
        n_bins: int = 180,
        smoothing_deg: float | None = None,
        angle_unit: str = "degree",
    ) -> None:
        if len(species) != 3:
            raise ValueError(f"species must be three element symbols (neighbour, centre, neighbour), got {species!r}")
        z = (atomic_number(species[0]), atomic_number(species[1]), atomic_number(species[2]))
        self._z = z
        self.species = tuple(element_symbols(list(z)))
        r_max_A, r_min_A = float(r_max_A), float(r_min_A)
        if not (math.isfinite(r_min_A) and r_min_A >= 0.0):
            raise ValueError(f"r_min_A must be finite and ≥ 0 Å, got {r_min_A}")
        if not (math.isfinite(r_max_A) and r_max_A > r_min_A):
            raise ValueError(f"r_max_A must be finite and larger than r_min_A = {r_min_A} Å, got {r_max_A}")
        if int(n_bins) != n_bins or n_bins < 1:
            raise ValueError(f"n_bins must be a positive integer, got {n_bins}")
        if angle_unit not in ANGLE_UNITS:
            raise ValueError(f"angle_unit must be one of {tuple(ANGLE_UNITS)}, got {angle_unit!r}")
        self.r_max_A, self.r_min_A, self.n_bins = r_max_A, r_min_A, int(n_bins)
        self.bin_width_deg = 180.0 / self.n_bins
        if smoothing_deg is None:
            smoothing_deg = self.bin_width_deg
        if not (math.isfinite(smoothing_deg) and smoothing_deg >= 0.0):
            raise ValueError(f"smoothing_deg must be finite and ≥ 0°, got {smoothing_deg}")
        self.smoothing_deg = float(smoothing_deg)
        self.angle_unit = angle_unit
        factor, suffix = ANGLE_UNITS[angle_unit]
        self._per_radian = factor
        self.name = f"adf_{'_'.join(self.species)}_{suffix}"
        self.unit = f"1/{angle_unit}"

    # ------------------------------------------------------------- grid
    def bin_edges(self) -> torch.Tensor:
        """[n_bins + 1] bin edges in the output angle unit (float64)."""
        return torch.linspace(0.0, math.pi, self.n_bins + 1, dtype=torch.float64) * self._per_radian

    def grid(self) -> torch.Tensor:
        """[n_bins] bin centres in the output angle unit (float64)."""
        edges = self.bin_edges()
        return 0.5 * (edges[1:] + edges[:-1])

    def grid_label(self) -> str:
        return "θ (°)" if self.angle_unit == "degree" else "θ (rad)"

    # ------------------------------------------------------------ checks
    def check(self, trajectory: Trajectory) -> None:
        """Refuse non-periodic frames, r_max beyond half a cell height, absent species."""
        self._check_cells(trajectory.cells_A, trajectory.pbc)
        check_species_present(self.name, self._z, trajectory.atomic_numbers)

    def _check_cells(self, cells: torch.Tensor, pbc: torch.Tensor) -> None:
        if not bool(torch.as_tensor(pbc).all()):
            raise ValueError(
                f"{self.name}: the ADF needs cells periodic in all three directions, got pbc={pbc.tolist()}"
            )
        check_cell_heights(self.name, self.r_max_A, cells)

    # ------------------------------------------------------------ values
    def per_frame(self, frames: State, potential: Potential | None = None) -> torch.Tensor:
        """[n_frames, n_bins] p(θ) of each frame in 1/degree or 1/radian (float64)."""
        frames = frames.to(torch.float64)
        self._check_cells(frames.cell, frames.pbc)
        check_species_present(self.name, self._z, frames.atomic_numbers)
        angles, system = triplet_angles(frames, self._z, self.r_min_A, self.r_max_A)
        n_frames = frames.n_systems
        n_triplets = torch.bincount(system, minlength=n_frames).to(torch.float64)
        if bool((n_triplets == 0).any()):
            f = int(torch.nonzero(n_triplets == 0)[0])
            raise ValueError(
                f"{self.name}: frame {f} has no {'–'.join(self.species)} triplet with both neighbours in "
                f"[{self.r_min_A:g}, {self.r_max_A:g}) Å"
            )
        width_rad = math.pi / self.n_bins
        counts = reflected_gaussian_histogram(angles, system, n_frames, self.n_bins, math.radians(self.smoothing_deg))
        return counts / (n_triplets[:, None] * width_rad * self._per_radian)


def triplet_angles(
    frames: State, species_z: tuple[int, int, int], r_min_A: float, r_max_A: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Angles θ_jik in radians of all triplets (j, i, k) and the system of each.

    Args:
        frames: periodic frames; r_max_A must not exceed half the smallest cell height
            (each neighbour then appears once).
        species_z: atomic numbers (B, A, C) of neighbour j, centre i, neighbour k.
        r_min_A, r_max_A: shell r_min ≤ r < r_max of both neighbours, Å.

    Returns:
        ([n_triplets] θ in [0, π] float64, [n_triplets] system index).
    """
    z_b, z_a, z_c = species_z
    z = frames.atomic_numbers
    pairs = build_pairs(frames, r_max_A, full_list=True)
    vec = pairs.vectors(frames.positions, frames.cell)
    dist = vec.norm(dim=-1)
    neighbour_ok = (z[pairs.j] == z_b) | (z[pairs.j] == z_c)
    keep = (z[pairs.i] == z_a) & neighbour_ok & (dist >= r_min_A) & (dist < r_max_A)
    centre = pairs.i[keep]
    order = torch.argsort(centre, stable=True)
    centre, vec, dist = centre[order], vec[keep][order], dist[keep][order]
    neighbour_z = z[pairs.j[keep][order]]
    system = pairs.system[keep][order]

    # Pairs p < q of neighbours of the same centre: with n neighbours in a group and p at
    # position l within it, p is followed by n − 1 − l partners.
    _, group_sizes = torch.unique_consecutive(centre, return_counts=True)
    n_pairs = centre.shape[0]
    group_start = torch.cumsum(group_sizes, 0) - group_sizes
    device = centre.device
    position = torch.arange(n_pairs, device=device) - torch.repeat_interleave(group_start, group_sizes)
    n_after = torch.repeat_interleave(group_sizes, group_sizes) - 1 - position
    first = torch.repeat_interleave(torch.arange(n_pairs, device=device), n_after)
    n_triplets = int(n_after.sum())
    first_of_pair = torch.repeat_interleave(torch.cumsum(n_after, 0) - n_after, n_after)
    offset = torch.arange(n_triplets, device=device) - first_of_pair + 1
    second = first + offset
    if z_b != z_c:
        zj, zk = neighbour_z[first], neighbour_z[second]
        mixed = ((zj == z_b) & (zk == z_c)) | ((zj == z_c) & (zk == z_b))
        first, second = first[mixed], second[mixed]
    cos = (vec[first] * vec[second]).sum(-1) / (dist[first] * dist[second])
    return torch.arccos(cos.clamp(-1.0, 1.0)), system[first]


def reflected_gaussian_histogram(
    angles_rad: torch.Tensor, group: torch.Tensor, n_groups: int, n_bins: int, sigma_rad: float
) -> torch.Tensor:
    """[n_groups, n_bins] Gaussian-smoothed counts on n_bins equal bins over [0, π].

    Each angle is spread with a Gaussian of width σ integrated exactly over every bin
    (erf); the kernel is reflected at 0 and π (images −θ and 2π − θ), so each angle
    contributes a total weight of 1 (up to the cut at 5σ). σ = 0 is a plain histogram
    with θ = π in the last bin.
    """
    width = math.pi / n_bins
    flat = torch.zeros(n_groups * n_bins, dtype=torch.float64, device=angles_rad.device)
    if angles_rad.numel() == 0:
        return flat.view(n_groups, n_bins)
    if sigma_rad == 0.0:
        k = torch.floor(angles_rad / width).long().clamp(0, n_bins - 1)
        flat.index_add_(0, group * n_bins + k, torch.ones_like(angles_rad))
        return flat.view(n_groups, n_bins)
    reach = KERNEL_HALF_WIDTH_SIGMAS * sigma_rad
    near_zero = angles_rad < reach
    near_pi = angles_rad > math.pi - reach
    centres = torch.cat([angles_rad, -angles_rad[near_zero], 2.0 * math.pi - angles_rad[near_pi]])
    groups = torch.cat([group, group[near_zero], group[near_pi]])
    n_window = int(math.ceil(2.0 * reach / width)) + 2
    first = torch.floor((centres - reach) / width).long()
    k = first[:, None] + torch.arange(n_window, device=angles_rad.device)[None, :]
    lo = k.to(torch.float64) * width
    scale = 1.0 / (math.sqrt(2.0) * sigma_rad)
    d = centres[:, None]
    weight = 0.5 * (torch.erf((lo + width - d) * scale) - torch.erf((lo - d) * scale))
    ok = (k >= 0) & (k < n_bins)
    flat.index_add_(0, (groups[:, None] * n_bins + k)[ok], weight[ok])
    return flat.view(n_groups, n_bins)
