"""Rigid-layer binding curves E(d) of layered materials (graphite, g-C3N4, h-BN, MoS2, ...).

Every layer of a periodic stack is moved as a rigid body along the normal of the cell's ab
plane so that neighbouring layers sit ``d`` apart, and the c vector is stretched so that its
component along that normal is n_layers·d (its in-plane part, the stacking offset of the
periodic images, is kept). The binding energy per atom is E(d) − E(d_far) at a large
separation d_far; its minimum (a parabola through the lowest grid point and its two
neighbours) gives the rigid-layer spacing d_min and the binding energy E_b = −min.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from .potentials.base import Potential
from .state import from_atoms

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms

MEV_PER_EV = 1000.0


@dataclass
class BindingCurve:
    """E(d) of a layered structure with rigid layers.

    Attributes:
        spacings_A: [n] interlayer spacings d, ascending, Å.
        energy_meV_per_atom: [n] E(d) − E(d_far) per atom, meV.
        far_spacing_A: d_far, the separation the energies are measured from, Å.
        d_min_A: spacing at the minimum, Å.
        binding_energy_meV_per_atom: −E(d_min), meV/atom (positive when the layers bind).
    """

    spacings_A: np.ndarray
    energy_meV_per_atom: np.ndarray
    far_spacing_A: float
    d_min_A: float
    binding_energy_meV_per_atom: float

    def as_dict(self) -> dict[str, float | list[float]]:
        """Plain numbers for JSON (names carry their units)."""
        return {"spacings_A": [float(x) for x in self.spacings_A],
                "energy_meV_per_atom": [float(x) for x in self.energy_meV_per_atom],
                "far_spacing_A": self.far_spacing_A, "d_min_A": self.d_min_A,
                "binding_energy_meV_per_atom": self.binding_energy_meV_per_atom}


def separate_layers(atoms: "Atoms", layer: Sequence[int] | np.ndarray, spacing_A: float) -> "Atoms":
    """A copy of ``atoms`` with its layers moved rigidly to ``spacing_A`` apart along the plane normal.

    Args:
        atoms: a periodic stack; layers are numbered 0 … n−1 from the bottom and the c vector
            spans all n of them.
        layer: [n_atoms] layer index of each atom (e.g. ``atoms.arrays["layer"]``).
        spacing_A: the new interlayer spacing d (> 0), Å.
    """
    layer = np.asarray(layer, dtype=int)
    if layer.shape != (len(atoms),):
        raise ValueError(f"layer must hold one index per atom ({len(atoms)}), got shape {layer.shape}")
    if not spacing_A > 0:
        raise ValueError(f"spacing_A must be positive, got {spacing_A}")
    layers = np.unique(layer)
    if not np.array_equal(layers, np.arange(len(layers))):
        raise ValueError(f"layer indices must be 0 … n−1, got {layers.tolist()}")
    cell = np.asarray(atoms.cell.array, dtype=float)
    normal = np.cross(cell[0], cell[1])
    normal /= np.linalg.norm(normal)
    out = atoms.copy()
    positions = out.get_positions()
    heights = positions @ normal
    for k in layers:
        mask = layer == k
        positions[mask] += (k * spacing_A - heights[mask].mean()) * normal
    c_height = float(cell[2] @ normal)
    if c_height <= 0:
        raise ValueError("the c vector must point to the side of a × b (a right-handed cell)")
    new_c = cell[2] + (len(layers) * spacing_A - c_height) * normal
    out.set_cell(np.vstack([cell[0], cell[1], new_c]), scale_atoms=False)
    out.set_positions(positions)
    out.info["interlayer_spacing_A"] = float(spacing_A)
    return out


def binding_curve(
    potential: Potential,
    atoms: "Atoms",
    layer: Sequence[int] | np.ndarray,
    spacings_A: Sequence[float],
    far_spacing_A: float = 15.0,
    dtype: torch.dtype = torch.float64,
) -> BindingCurve:
    """E(d) − E(d_far) per atom of ``potential`` with the layers of ``atoms`` held rigid.

    Args:
        potential: any exprefine potential.
        atoms, layer: the stack and the layer index of each atom (see :func:`separate_layers`).
        spacings_A: the grid of d (at least 3 values below ``far_spacing_A``).
        far_spacing_A: the separation taken as unbound.
        dtype: dtype of the positions given to the potential.
    """
    grid = np.array(sorted(float(x) for x in spacings_A))
    if len(grid) < 3 or grid[-1] >= far_spacing_A:
        raise ValueError(f"need ≥ 3 spacings below far_spacing_A = {far_spacing_A} Å, got {grid.tolist()}")
    energies = np.array([_energy_per_atom(potential, separate_layers(atoms, layer, d), dtype)
                         for d in [*grid, far_spacing_A]])
    relative = (energies[:-1] - energies[-1]) * MEV_PER_EV
    d_min, e_min = parabolic_minimum(grid, relative)
    return BindingCurve(grid, relative, float(far_spacing_A), d_min, -e_min)


def parabolic_minimum(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(x, y) at the minimum of the parabola through the lowest sample and its neighbours.

    At an end of the grid, or where the three points do not curve upwards, the lowest sample itself.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    k = int(np.argmin(y))
    if k == 0 or k == len(y) - 1:
        return float(x[k]), float(y[k])
    a, b, c = np.polyfit(x[k - 1:k + 2], y[k - 1:k + 2], 2)
    if a <= 0:
        return float(x[k]), float(y[k])
    x0 = -b / (2 * a)
    return float(x0), float(c - b * b / (4 * a))


def _energy_per_atom(potential: Potential, atoms: "Atoms", dtype: torch.dtype) -> float:
    return float(potential.energy(from_atoms(atoms, dtype=dtype))[0].detach()) / len(atoms)
