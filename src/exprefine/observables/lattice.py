"""Lattice parameters: mean cell lengths (per axis) and cell angles of NPT frames.

For a supercell of ``repeats`` unit cells along a lattice vector, the lattice parameter is the
length of that vector over ``repeats``; the angles are those between the cell vectors
(α between b and c, β between a and c, γ between a and b). The reweighted estimate is the mean
⟨|a|⟩ (not ⟨V⟩^(1/3)); lengths and angles do not depend on θ, so the gradient flows through the
weights only. In NVT the cell is fixed and these are constants; the thermal expansion follows
from lattice parameters at several temperatures.
"""

from __future__ import annotations

import torch

from ..potentials.base import Potential
from ..state import State
from .base import Observable

#: The lattice parameters by name: (kind, index) with index the vector (lengths) or the angle's opposite vector.
PARAMETERS = {"a": ("length", 0), "b": ("length", 1), "c": ("length", 2),
              "alpha": ("angle", 0), "beta": ("angle", 1), "gamma": ("angle", 2)}


class LatticeParameter(Observable):
    """One lattice parameter of each frame: a length in Å or an angle in degrees.

    Args:
        parameter: ``"a"``, ``"b"``, ``"c"`` (lengths of the first, second, third cell vector) or
            ``"alpha"``, ``"beta"``, ``"gamma"`` (angles b∠c, a∠c, a∠b).
        repeats: unit cells along the vector in the simulated supercell (lengths only).
    """

    depends_on_parameters = False

    def __init__(self, parameter: str, repeats: int = 1) -> None:
        if parameter not in PARAMETERS:
            raise ValueError(f"lattice parameter must be one of {tuple(PARAMETERS)}, got {parameter!r}")
        if repeats < 1:
            raise ValueError(f"repeats must be ≥ 1, got {repeats}")
        self.kind, self.index = PARAMETERS[parameter]
        if self.kind == "angle" and repeats != 1:
            raise ValueError(f"repeats is for lengths, not the angle {parameter}")
        self.parameter = parameter
        self.repeats = repeats
        self.name = f"lattice_{parameter}"
        self.unit = "Å" if self.kind == "length" else "°"

    def per_frame(self, frames: State, potential: Potential | None = None) -> torch.Tensor:
        """[n_frames] the lattice parameter of each frame (Å or degrees)."""
        cell = frames.cell.to(torch.float64)
        if self.kind == "length":
            return torch.linalg.norm(cell[:, self.index], dim=-1) / self.repeats
        u, v = [cell[:, k] for k in range(3) if k != self.index]
        cos = (u * v).sum(-1) / (torch.linalg.norm(u, dim=-1) * torch.linalg.norm(v, dim=-1))
        return torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))
