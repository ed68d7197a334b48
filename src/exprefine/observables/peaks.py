"""Single numbers a measurement may give: the position of a peak, the spacing of layers.

``PeakPosition`` wraps any curve observable (g(r), S(Q), an ADF): per frame it stores
the curve, and its reduction finds the peak of the *reweighted average curve* inside a
window, refined to sub-grid precision by the vertex of the parabola through the
highest grid point and its two neighbours. That vertex is a smooth function of the
averaged curve, so the reweighted gradient flows through it like through a mean.

``InterlayerSpacing`` is the height of the cell along the stacking direction divided
by the number of layers: the mean interlayer distance of a layered crystal (it moves
only in NPT sampling with a barostat that lets that axis breathe).
"""

from __future__ import annotations

import torch

from ..potentials.base import Potential
from ..state import State
from ..trajectory import Trajectory
from .base import Observable


def parabolic_peak(x: torch.Tensor, y: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Position of the maximum of y(x) within [lo, hi] by a three-point parabola (differentiable in y).

    Args:
        x: [n] increasing, uniformly spaced grid.
        y: [n] values.
    Raises:
        ValueError: the window holds fewer than three grid points, or the maximum sits on its edge.
    """
    inside = torch.nonzero((x >= lo) & (x <= hi)).flatten()
    if inside.numel() < 3:
        raise ValueError(f"peak window [{lo}, {hi}] holds {inside.numel()} grid points; at least 3 are needed")
    k = int(inside[torch.argmax(y[inside].detach())])
    if k in (int(inside[0]), int(inside[-1])):
        raise ValueError(f"the maximum in [{lo}, {hi}] lies on the window's edge at {float(x[k]):.4g}: "
                         "the window does not bracket a peak")
    y0, y1, y2 = y[k - 1], y[k], y[k + 1]
    h = x[k + 1] - x[k]
    curvature = y0 - 2.0 * y1 + y2
    return x[k] + 0.5 * h * (y0 - y2) / curvature


class PeakPosition(Observable):
    """Position of the peak of another observable's averaged curve inside ``window``.

    Args:
        curve: the observable whose curve has the peak (parameter-independent).
        window: (low, high) in the unit of ``curve``'s grid.
    """

    depends_on_parameters = False

    def __init__(self, curve: Observable, window: tuple[float, float]) -> None:
        if curve.grid() is None:
            raise ValueError(f"{curve.name} has no grid: a peak position needs a curve")
        if curve.depends_on_parameters:
            raise ValueError(f"{curve.name} depends on the parameters: peak positions take structural curves")
        lo, hi = float(window[0]), float(window[1])
        if not hi > lo:
            raise ValueError(f"peak window must be (low, high) with low < high, got {window}")
        self.curve = curve
        self.window = (lo, hi)
        self.name = f"peak_{curve.name}"
        label = curve.grid_label()
        self.unit = label[label.find("(") + 1:label.rfind(")")] if "(" in label else ""

    def check(self, trajectory: Trajectory) -> None:
        self.curve.check(trajectory)

    def per_frame(self, frames: State, potential: Potential | None = None) -> torch.Tensor:
        """[n_frames, n_grid] the curve of each frame (the peak is taken after averaging)."""
        return self.curve.per_frame(frames, potential)

    def reduce(self, values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Scalar peak position of Σ_i w_i O_i(x)."""
        mean = torch.tensordot(weights.to(values.dtype), values, dims=([0], [0]))
        grid = self.curve.grid()
        assert grid is not None, f"{self.curve.name} has no grid"
        grid = grid.to(mean.dtype)
        return parabolic_peak(grid, mean, *self.window)


class InterlayerSpacing(Observable):
    """Cell height along ``axis`` divided by ``n_layers``, Å (the mean interlayer spacing).

    Args:
        n_layers: layers in the cell.
        axis: 0, 1 or 2, the stacking direction (z by default). The height is the cell
            volume divided by the area spanned by the two other cell vectors.
    """

    name = "interlayer_spacing"
    unit = "Å"
    depends_on_parameters = False

    def __init__(self, n_layers: int, axis: int = 2) -> None:
        if n_layers < 1:
            raise ValueError(f"n_layers must be ≥ 1, got {n_layers}")
        if axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
        self.n_layers = n_layers
        self.axis = axis

    def per_frame(self, frames: State, potential: Potential | None = None) -> torch.Tensor:
        """[n_frames] spacing in Å."""
        cell = frames.cell.to(torch.float64)
        a, b = [cell[:, k] for k in range(3) if k != self.axis]
        area = torch.linalg.norm(torch.cross(a, b, dim=-1), dim=-1)
        height = torch.linalg.det(cell).abs() / area
        return height / self.n_layers
