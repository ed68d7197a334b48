"""Lattice parameters: mean cell lengths (per axis) and cell angles of NPT frames.

For a supercell of ``repeats`` unit cells along a lattice vector, the lattice parameter is the
length of that vector over ``repeats``; the angles are those between the cell vectors
(α between b and c, β between a and c, γ between a and b). The reweighted estimate is the mean
⟨|a|⟩ (not ⟨V⟩^(1/3)); lengths and angles do not depend on θ, so the gradient flows through the
weights only. In NVT the cell is fixed and these are constants.

Thermal expansion. Until a target can span several state points, the linear thermal expansion
coefficient is the finite difference of two NPT runs, α = (a₂ − a₁) / (ā (T₂ − T₁)) with
ā = (a₁ + a₂)/2 (:func:`linear_thermal_expansion`, standard error propagated from the two runs'
independent errors); it is a central difference, exact to O(ΔT²) for α at the mean temperature.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass
class ThermalExpansion:
    """Linear thermal expansion coefficient from two temperatures.

    Attributes:
        alpha_per_K: α = (a₂ − a₁) / (ā (T₂ − T₁)), 1/K.
        standard_error_per_K: its standard error from those of a₁ and a₂ (independent runs), 1/K.
        temperature_K: (T₁ + T₂)/2, where α is estimated.
    """

    alpha_per_K: float
    standard_error_per_K: float
    temperature_K: float


def linear_thermal_expansion(a1_A: float, se1_A: float, temperature1_K: float,
                             a2_A: float, se2_A: float, temperature2_K: float) -> ThermalExpansion:
    """α from the mean lattice parameters a₁ ± se₁ at T₁ and a₂ ± se₂ at T₂ (Å, K) of two NPT runs."""
    dT = temperature2_K - temperature1_K
    if dT == 0:
        raise ValueError("the two temperatures must differ")
    mean = 0.5 * (a1_A + a2_A)
    alpha = (a2_A - a1_A) / (mean * dT)
    se = (se1_A**2 + se2_A**2) ** 0.5 / (mean * abs(dT))
    return ThermalExpansion(alpha_per_K=alpha, standard_error_per_K=se,
                            temperature_K=0.5 * (temperature1_K + temperature2_K))
