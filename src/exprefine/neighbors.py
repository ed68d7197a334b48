"""Neighbour lists from the ``vesin`` package, as differentiable pair vectors.

vesin finds the pairs (i, j, periodic shift S) on plain arrays; the pair vectors
r_ij = x_j − x_i + S·cell are then formed in torch so that gradients flow to the
positions and to the cell (for the virial).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .state import State


@dataclass
class PairList:
    """Pairs within a cutoff for every system of a batch.

    Attributes:
        i, j: [n_pairs] global atom indices (half list: each pair once, i ≠ j or a periodic image).
        shifts: [n_pairs, 3] integer cell shifts S of atom j.
        system: [n_pairs] system index of each pair.
        cutoff_A: the cutoff used, Å.
    """

    i: torch.Tensor
    j: torch.Tensor
    shifts: torch.Tensor
    system: torch.Tensor
    cutoff_A: float

    @property
    def n_pairs(self) -> int:
        return int(self.i.shape[0])

    def vectors(self, positions: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """[n_pairs, 3] vectors from i to j in Å (differentiable in positions and cell).

        Args:
            positions: [n_atoms, 3] Å.
            cell: [n_systems, 3, 3] Å, rows are lattice vectors.
        """
        shift_vec = torch.bmm(self.shifts.to(positions.dtype).unsqueeze(1), cell[self.system]).squeeze(1)
        return positions[self.j] - positions[self.i] + shift_vec


def build_pairs(state: State, cutoff_A: float, full_list: bool = False) -> PairList:
    """All pairs closer than ``cutoff_A`` in every system of ``state``.

    Triclinic periodic cells and mixed periodicity are supported. With ``full_list``
    each pair appears twice (i→j and j→i).
    """
    if cutoff_A <= 0:
        raise ValueError(f"cutoff must be positive, got {cutoff_A} Å")
    positions = state.positions.detach().cpu().double().numpy()
    cells = state.cell.detach().cpu().double().numpy()
    pbcs = state.pbc.cpu().numpy()
    counts = state.n_atoms_per_system.tolist()
    is_list, js_list, ss_list, sys_list = [], [], [], []
    start = 0
    for s, n in enumerate(counts):
        periodic = [bool(p) for p in pbcs[s]]
        if any(periodic) and abs(np.linalg.det(cells[s])) < 1e-10:
            raise ValueError(f"system {s}: periodic cell is singular")
        i, j, S = frame_pairs(positions[start : start + n], cells[s], periodic, cutoff_A, full_list)
        is_list.append(i.astype(np.int64) + start)
        js_list.append(j.astype(np.int64) + start)
        ss_list.append(S.astype(np.int64))
        sys_list.append(np.full(len(i), s, dtype=np.int64))
        start += n
    dev = state.device
    return PairList(
        i=torch.from_numpy(np.concatenate(is_list)).to(dev),
        j=torch.from_numpy(np.concatenate(js_list)).to(dev),
        shifts=torch.from_numpy(np.concatenate(ss_list).reshape(-1, 3)).to(dev),
        system=torch.from_numpy(np.concatenate(sys_list)).to(dev),
        cutoff_A=float(cutoff_A),
    )


def frame_pairs(positions_A: np.ndarray, cell_A: np.ndarray, periodic: list[bool], cutoff_A: float,
                full_list: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """vesin's pairs of one frame closer than ``cutoff_A``: i [n_pairs], j [n_pairs] and the cell
    shifts S [n_pairs, 3] (integers) with r_ij = x_j − x_i + S·cell. ``cell_A`` [3, 3] (rows) is
    ignored when no direction is periodic."""
    from vesin import NeighborList

    box = cell_A if any(periodic) else np.zeros((3, 3))
    i, j, shifts = NeighborList(cutoff=float(cutoff_A), full_list=full_list).compute(
        positions_A, box, periodic, quantities="ijS", copy=True)
    return i, j, shifts


def cell_heights_A(cell: np.ndarray) -> np.ndarray:
    """[3] distances between opposite faces of a cell given as rows (Å)."""
    volume = abs(np.linalg.det(cell))
    heights = np.empty(3)
    for k in range(3):
        a, b = cell[(k + 1) % 3], cell[(k + 2) % 3]
        heights[k] = volume / np.linalg.norm(np.cross(a, b))
    return heights



class VerletPairCache:
    """Reuse a pair list built with ``cutoff + skin`` while no atom has moved more than skin/2.

    The classic Verlet-list criterion: pairs closer than the cutoff now were closer than
    cutoff + skin when the list was built, as long as every atom moved less than skin/2.
    Any change of the atoms, the cell or the periodicity forces a rebuild, so the cache
    is always exact; consecutive MD steps reuse it, unrelated frames do not.

    Args:
        skin_A: extra distance in Å; 0 disables the cache.
    """

    def __init__(self, skin_A: float = 1.0) -> None:
        if skin_A < 0:
            raise ValueError(f"skin must be ≥ 0 Å, got {skin_A}")
        self.skin_A = float(skin_A)
        self._pairs: PairList | None = None
        self._positions: torch.Tensor | None = None
        self._cell: torch.Tensor | None = None
        self._key: tuple | None = None
        self.n_builds = 0

    def pairs(self, state: State, cutoff_A: float) -> PairList:
        """Pairs within at least ``cutoff_A`` (possibly more, up to cutoff + skin)."""
        positions = state.positions.detach()
        cell = state.cell.detach()
        key = (float(cutoff_A), state.n_atoms, state.n_systems, state.dtype, state.device)
        if self.skin_A > 0 and self._pairs is not None and key == self._key and self._still_valid(state, positions, cell):
            return self._pairs
        self._pairs = build_pairs(state, cutoff_A + self.skin_A)
        self._pairs.cutoff_A = float(cutoff_A) + self.skin_A
        self._positions = positions.clone()
        self._cell = cell.clone()
        self._numbers = state.atomic_numbers.clone()
        self._system_idx = state.system_idx.clone()
        self._pbc = state.pbc.clone()
        self._key = key
        self.n_builds += 1
        return self._pairs

    def _still_valid(self, state: State, positions: torch.Tensor, cell: torch.Tensor) -> bool:
        assert self._positions is not None and self._cell is not None
        if not torch.equal(cell, self._cell):
            return False
        if not (torch.equal(state.atomic_numbers, self._numbers) and torch.equal(state.system_idx, self._system_idx)
                and torch.equal(state.pbc, self._pbc)):
            return False
        max_disp = (positions - self._positions).norm(dim=-1).max()
        return bool(max_disp < 0.5 * self.skin_A)

    def __deepcopy__(self, memo):  # a copy of a potential starts with an empty cache
        return VerletPairCache(self.skin_A)
