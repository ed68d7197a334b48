"""Directed edges (graph form of a pair list) for message-passing models.

exprefine's pair lists (:mod:`exprefine.neighbors`) hold each pair once, possibly built with a
Verlet skin. Message-passing models want every pair in both directions and exactly within
their cutoff; :func:`edges_within_cutoff` converts one into the other. The edge vector is
``positions[receiver] − positions[sender] + shifts_A`` with ``shifts_A = S·cell`` formed in
torch, so it stays differentiable in the positions and in the cell (strain, virial).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..neighbors import PairList


@dataclass
class Edges:
    """Edges of all systems of a batch.

    Attributes:
        edge_index: [2, n_edges] (sender, receiver) global atom indices.
        unit_shifts: [n_edges, 3] integer cell shifts S of the receiver.
        shifts_A: [n_edges, 3] Cartesian shifts S·cell in Å (differentiable in the cell).
        system: [n_edges] system index of each edge.
    """

    edge_index: torch.Tensor
    unit_shifts: torch.Tensor
    shifts_A: torch.Tensor
    system: torch.Tensor

    @property
    def n_edges(self) -> int:
        return int(self.edge_index.shape[1])

    def vectors(self, positions: torch.Tensor) -> torch.Tensor:
        """[n_edges, 3] vectors sender → receiver in Å."""
        sender, receiver = self.edge_index
        return positions[receiver] - positions[sender] + self.shifts_A


def edges_within_cutoff(
    pairs: PairList,
    positions: torch.Tensor,
    cell: torch.Tensor,
    cutoff_A: float,
    *,
    full_list: bool = True,
) -> Edges:
    """Edges of the pairs of ``pairs`` closer than ``cutoff_A`` at ``positions``.

    Args:
        pairs: a half pair list built with at least ``cutoff_A`` (a Verlet skin is fine).
        positions: [n_atoms, 3] Å; its dtype is used for the shifts.
        cell: [n_systems, 3, 3] Å, rows are lattice vectors.
        cutoff_A: keep pairs with distance < cutoff_A (strictly).
        full_list: both directions of every pair (i → j and j → i); one direction otherwise.
    """
    if pairs.cutoff_A < cutoff_A:
        raise ValueError(f"pair list built with {pairs.cutoff_A} Å cannot give edges within {cutoff_A} Å")
    with torch.no_grad():
        r = pairs.vectors(positions.detach(), cell.detach()).norm(dim=-1)
    keep = r < cutoff_A
    i, j, s, system = pairs.i[keep], pairs.j[keep], pairs.shifts[keep], pairs.system[keep]
    if full_list:
        i, j = torch.cat([i, j]), torch.cat([j, i])
        s = torch.cat([s, -s])
        system = torch.cat([system, system])
    unit_shifts = s.to(positions.dtype)
    shifts_A = torch.bmm(unit_shifts.unsqueeze(1), cell.to(positions.dtype)[system]).squeeze(1)
    return Edges(edge_index=torch.stack([i, j]), unit_shifts=unit_shifts, shifts_A=shifts_A, system=system)


__all__ = ["Edges", "edges_within_cutoff"]
