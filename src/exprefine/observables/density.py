"""Density of each frame: mass density in g/cm³ or number density in Å⁻³.

In the isothermal–isobaric ensemble the volume fluctuates from frame to frame; the
reweighted average ⟨ρ⟩ = Σ w_i ρ_i then moves with the parameters through the
weights alone (ρ_i does not depend on θ), so density can be a refinement target.
For the mass density the reweighted quantity is ⟨M/V⟩, the usual estimate.
"""

from __future__ import annotations

import torch

from ..potentials.base import Potential
from ..state import State
from ..units import G_PER_CM3_IN_AMU_PER_A3
from .base import Observable

KINDS = ("mass", "number")


class Density(Observable):
    """Per-frame density.

    Args:
        kind: ``"mass"`` (g/cm³) or ``"number"`` (atoms per Å³).
    """

    name = "density"
    depends_on_parameters = False

    def __init__(self, kind: str = "mass") -> None:
        if kind not in KINDS:
            raise ValueError(f"density kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.unit = "g/cm³" if kind == "mass" else "Å⁻³"

    def per_frame(self, frames: State, potential: Potential | None = None) -> torch.Tensor:
        """[n_frames] density of each frame (each system of ``frames`` is a frame)."""
        volume = frames.volume_A3().to(torch.float64)
        if self.kind == "number":
            return frames.n_atoms_per_system.to(torch.float64) / volume
        mass = torch.zeros(frames.n_systems, dtype=torch.float64, device=volume.device)
        mass.index_add_(0, frames.system_idx, frames.masses.to(torch.float64))
        return mass / volume / G_PER_CM3_IN_AMU_PER_A3
