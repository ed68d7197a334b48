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
        shift_vec = torch.einsum("pa,pab->pb", self.shifts.to(positions.dtype), cell[self.system])
        return positions[self.j] - positions[self.i] + shift_vec


def build_pairs(state: State, cutoff_A: float, full_list: bool = False) -> PairList:
    """All pairs closer than ``cutoff_A`` in every system of ``state``.

    Triclinic periodic cells and mixed periodicity are supported. With ``full_list``
    each pair appears twice (i→j and j→i).
    """
    from vesin import NeighborList

    if cutoff_A <= 0:
        raise ValueError(f"cutoff must be positive, got {cutoff_A} Å")
    positions = state.positions.detach().cpu().double().numpy()
    cells = state.cell.detach().cpu().double().numpy()
    pbcs = state.pbc.cpu().numpy()
    counts = state.n_atoms_per_system.tolist()
    calc = NeighborList(cutoff=float(cutoff_A), full_list=full_list)
    is_list, js_list, ss_list, sys_list = [], [], [], []
    start = 0
    for s, n in enumerate(counts):
        pos = positions[start : start + n]
        periodic = [bool(p) for p in pbcs[s]]
        box = cells[s] if any(periodic) else np.zeros((3, 3))
        if any(periodic) and abs(np.linalg.det(cells[s])) < 1e-10:
            raise ValueError(f"system {s}: periodic cell is singular")
        i, j, S = calc.compute(pos, box, periodic, quantities="ijS", copy=True)
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


def cell_heights_A(cell: np.ndarray) -> np.ndarray:
    """[3] distances between opposite faces of a cell given as rows (Å)."""
    volume = abs(np.linalg.det(cell))
    heights = np.empty(3)
    for k in range(3):
        a, b = cell[(k + 1) % 3], cell[(k + 2) % 3]
        heights[k] = volume / np.linalg.norm(np.cross(a, b))
    return heights

