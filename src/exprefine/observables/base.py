"""The Observable contract: per-frame values and a weighted reduction.

In DiffTRe the gradient of an ensemble average flows through the Boltzmann weights;
structural observables (g(r), S(Q), angles) do not depend on the parameters θ and
are computed once per trajectory. Observables that do depend on θ (pressure via the
virial) say so with ``depends_on_parameters`` and are then recomputed with a graph.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..neighbors import cell_heights_A
from ..potentials.base import Potential
from ..state import State
from ..trajectory import Trajectory
from ..units import BOLTZMANN_eV_per_K


class CellTooSmall(ValueError):
    """Some frame's cell is too thin for the observable's range (r_max beyond half a cell height).

    In NPT this can follow from the parameters themselves (a model that packs the layers more
    densely), so the refinement treats it like a blown-up sampling rather than a bad input.
    """


#: Relative excess of r_max over half the smallest cell height that is still accepted. The pair
#: lists hold every periodic image (vesin), so counts beyond L/2 are exact for the periodic
#: system; the limit guards against finite-size artefacts, and an NPT cell whose height dips by
#: a fraction of a percent below 2·r_max in a few frames (thermal fluctuation) does not make them.
HEIGHT_TOLERANCE = 0.01


def thick_enough(r_max_A: float, cells: torch.Tensor) -> torch.Tensor:
    """[n] True for each of ``cells`` ([n, 3, 3], Å) whose smallest height is at least 2·``r_max_A``
    within :data:`HEIGHT_TOLERANCE` (the one definition of "too thin" for pair observables)."""
    heights = torch.tensor([float(np.min(cell_heights_A(c)))
                            for c in cells.detach().cpu().double().reshape(-1, 3, 3).numpy()], dtype=torch.float64)
    return r_max_A <= 0.5 * heights * (1.0 + HEIGHT_TOLERANCE) + 1e-9


def check_cell_heights(name: str, r_max_A: float, cells: torch.Tensor) -> None:
    """Raise :class:`CellTooSmall` if ``r_max_A`` exceeds half the smallest height of any of ``cells`` ([n, 3, 3], Å)
    by more than :data:`HEIGHT_TOLERANCE` (1 %)."""
    ok = thick_enough(r_max_A, cells)
    if not bool(ok.all()):
        smallest = min(float(np.min(cell_heights_A(c))) for c in cells.detach().cpu().double().reshape(-1, 3, 3).numpy())
        raise CellTooSmall(
            f"{name}: r_max_A = {r_max_A:g} Å exceeds half the smallest cell height "
            f"{0.5 * smallest:g} Å (height {smallest:g} Å) by more than {100 * HEIGHT_TOLERANCE:g} %; "
            "use a larger cell or a smaller r_max"
        )


#: Relative mismatch allowed between an observable's temperature and a trajectory's kT.
TEMPERATURE_RTOL = 1e-3


def positive_temperature(temperature_K: float) -> float:
    """``temperature_K`` as a float; a one-line error unless it is positive and finite."""
    temperature_K = float(temperature_K)
    if not (math.isfinite(temperature_K) and temperature_K > 0):
        raise ValueError(f"temperature_K must be positive and finite, got {temperature_K}")
    return temperature_K


def check_temperature(name: str, temperature_K: float, trajectory: Trajectory) -> None:
    """Raise a one-line ValueError if ``trajectory`` was sampled at another temperature than ``temperature_K``."""
    traj_T = trajectory.kT_eV / BOLTZMANN_eV_per_K
    if abs(traj_T - temperature_K) > TEMPERATURE_RTOL * temperature_K:
        raise ValueError(f"{name}: temperature_K = {temperature_K:g} K but the trajectory was sampled at {traj_T:g} K")


class Observable:
    """Base class. Subclasses set ``name``, ``unit`` and implement :meth:`per_frame`.

    Attributes:
        name: short identifier, e.g. ``"rdf_Ar_Ar"``.
        unit: unit of the values, e.g. ``"1"`` or ``"bar"``.
        depends_on_parameters: True if values change with the potential's parameters.
    """

    name: str = "observable"
    unit: str = "1"
    depends_on_parameters: bool = False

    def grid(self) -> torch.Tensor | None:
        """[n_grid] abscissa of the values (e.g. r in Å), or None for a scalar."""
        return None

    def grid_label(self) -> str:
        """Axis label of the grid with its unit, e.g. ``"r (Å)"``."""
        return ""

    def check(self, trajectory: Trajectory) -> None:
        """Raise a one-line ValueError if this observable cannot be computed on these frames."""

    def per_frame(self, frames: State, potential: Potential | None = None) -> torch.Tensor:
        """[n_frames, *shape] value of the observable in each frame (each system of ``frames`` is a frame)."""
        raise NotImplementedError

    def reduce(self, values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Weighted ensemble average Σ_i w_i O_i.

        Args:
            values: [n_frames, *shape].
            weights: [n_frames], non-negative, summing to 1 (float64).
        """
        return torch.tensordot(weights.to(values.dtype), values, dims=([0], [0]))

    def evaluate(
        self, trajectory: Trajectory, potential: Potential | None = None, chunk_size: int = 64
    ) -> torch.Tensor:
        """[n_frames, *shape] per-frame values of a whole trajectory, computed chunk by chunk without a graph."""
        self.check(trajectory)
        with torch.no_grad():
            parts = [self.per_frame(trajectory.as_state(sl), potential) for sl in trajectory.chunks(chunk_size)]
        return torch.cat(parts)
