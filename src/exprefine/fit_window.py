"""Where a curve target is fitted: its fit range met with the data's extent and the observable's grid.

A fit range that misses the data or the grid is an error; one that runs past either end is
clipped, and :meth:`FitWindow.notes` says so in one line each (never silently).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class FitWindow:
    """A curve target's fit range against its data and its model grid (all in the grid's unit).

    Attributes:
        fit_range: (low, high) as configured, or the data's extent when none is given.
        given: whether the fit range was configured (False: the data's extent is used).
        data_range: (first, last) x of the data.
        grid: [n] the observable's grid.
        mask: [n] bool, the grid points fitted: inside the fit range and the data's extent.
    """

    fit_range: tuple[float, float]
    given: bool
    data_range: tuple[float, float]
    grid: np.ndarray
    mask: np.ndarray

    @property
    def used(self) -> tuple[float, float] | None:
        """(first, last) grid point fitted, or None when there is none."""
        if not self.mask.any():
            return None
        fitted = self.grid[self.mask]
        return float(fitted[0]), float(fitted[-1])

    def _step(self) -> float:
        return float(np.median(np.diff(self.grid))) if len(self.grid) > 1 else 0.0

    def error(self, key: str) -> str | None:
        """Why nothing can be fitted (``key``: the config key of the fit range, e.g. fit_range_A), or None."""
        if self.used is not None:
            return None
        lo, hi = self.fit_range
        return (f"{key} [{lo:g}, {hi:g}] holds no grid point that the data cover: data "
                f"[{self.data_range[0]:.4g}, {self.data_range[1]:.4g}], grid [{self.grid[0]:.4g}, {self.grid[-1]:.4g}]")

    def notes(self, key: str) -> list[str]:
        """One line for each end of a configured fit range that is clipped by the data or the grid."""
        used = self.used
        if not self.given or used is None:
            return []
        lo, hi = self.fit_range
        step = self._step()
        inside = (self.grid >= lo) & (self.grid <= hi)
        out = []
        beyond_data = inside & ((self.grid < self.data_range[0]) | (self.grid > self.data_range[1]))
        if beyond_data.any():
            out.append(f"{key} [{lo:g}, {hi:g}] runs past the data [{self.data_range[0]:.4g}, {self.data_range[1]:.4g}]: "
                       f"{int(beyond_data.sum())} grid points dropped, fitted over [{used[0]:.4g}, {used[1]:.4g}]")
        if hi > self.grid[-1] + step or lo < self.grid[0] - step:
            out.append(f"{key} [{lo:g}, {hi:g}] runs past the observable's grid [{self.grid[0]:.4g}, "
                       f"{self.grid[-1]:.4g}] (its r_max/q_max or bins): fitted over [{used[0]:.4g}, {used[1]:.4g}]")
        return out


def fit_window(fit_range: tuple[float, float] | None, data_x: np.ndarray, grid: np.ndarray) -> FitWindow:
    """The grid points fitted for ``fit_range`` (None: the data's whole extent), data x ``data_x`` and ``grid``."""
    first, last = float(data_x[0]), float(data_x[-1])
    lo, hi = fit_range if fit_range is not None else (first, last)
    covered = (grid >= first) & (grid <= last)
    mask = covered & (grid >= lo) & (grid <= hi)
    return FitWindow(fit_range=(float(lo), float(hi)), given=fit_range is not None, data_range=(first, last),
                     grid=grid, mask=mask)
