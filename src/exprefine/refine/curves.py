"""Every target's model curves next to its measurement, as plain data: what plots and reports draw.

A run writes them to ``curves.json`` (:func:`write_curves`), so a report can be drawn later
from the run directory alone (:func:`read_curves`), without the data files or the trajectories.
The measurement is kept at its own points (not interpolated onto the model's grid), with σ
where the data give one.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from .records import Evaluation
from .targets import Target


@dataclass
class ModelCurve:
    """One model's ensemble average of a target.

    Attributes:
        label: which model ("before", "after", "model").
        values: [n_grid] values on the target's grid ([1] for a scalar target), in the target's unit.
        standard_errors: block standard errors, same length (NaN where unknown).
        rmse: RMSE against the measurement inside the fit range (the loss's measure).
    """

    label: str
    values: list[float]
    standard_errors: list[float]
    rmse: float


@dataclass
class TargetCurve:
    """A target's measurement at its own points and the models' curves on the observable's grid.

    Attributes:
        name: the target's name.
        quantity: the observable's name (e.g. ``rdf_Ar_Ar``).
        unit: unit of the values ("1" for g(r), "bar", ...).
        grid_label: axis label of the grid with its unit (e.g. "r (Å)"); None for a scalar target.
        grid: [n_grid] the observable's grid ([] for a scalar).
        fit_range: (first, last) grid point inside the fit range, or None (a scalar).
        measured_x: [m] the data's own abscissa in the grid's unit ([] for a scalar).
        measured_y: [m] measured values ([1] for a scalar).
        measured_sigma: [m] their σ, or None when the data give none.
        source: the data file, or None.
        models: the model curves.
    """

    name: str
    quantity: str
    unit: str
    grid_label: str | None
    grid: list[float]
    fit_range: tuple[float, float] | None
    measured_x: list[float]
    measured_y: list[float]
    measured_sigma: list[float] | None
    source: str | None = None
    models: list[ModelCurve] = field(default_factory=list)

    @property
    def is_scalar(self) -> bool:
        return self.grid_label is None


def _floats(t: torch.Tensor) -> list[float]:
    return [float(v) for v in t.detach().cpu().reshape(-1).tolist()]


def _measurement(target: Target) -> tuple[list[float], list[float], list[float] | None, str | None]:
    """The measurement at its own points (or, without one, the reference on the grid's fitted points)."""
    if target.observable.grid() is None:
        sigma = None if target.sigma is None else _floats(target.sigma)
        return [], _floats(target.reference), sigma, None
    data = target.measured
    if data is not None:
        sigma = None if data.sigma is None else [float(v) for v in data.sigma]
        return [float(v) for v in data.x], [float(v) for v in data.y], sigma, data.source
    grid = target.observable.grid()
    assert grid is not None
    keep = target._mask() & torch.isfinite(target.reference)
    sigma = None if target.sigma is None else _floats(target.sigma[keep])
    return _floats(grid[keep]), _floats(target.reference[keep]), sigma, None


def target_curves(targets: Sequence[Target], evaluations: Sequence[tuple[str, Evaluation]]) -> list[TargetCurve]:
    """The curves of every target under each labelled evaluation (e.g. ``[("before", ev0), ("after", ev1)]``)."""
    out = []
    for k, target in enumerate(targets):
        grid = target.observable.grid()
        fit_range = None
        if grid is not None:
            fitted = grid[target._mask()]
            fit_range = (float(fitted.min()), float(fitted.max()))
        x, y, sigma, source = _measurement(target)
        models = []
        for label, ev in evaluations:
            values = _floats(ev.predictions[k])
            se = ev.standard_errors.get(target.name)
            errors = _floats(se) if se is not None else [math.nan] * len(values)
            models.append(ModelCurve(label=label, values=values, standard_errors=errors, rmse=float(ev.rmse[target.name])))
        out.append(TargetCurve(
            name=target.name, quantity=target.observable.name, unit=target.observable.unit,
            grid_label=None if grid is None else target.observable.grid_label(),
            grid=[] if grid is None else _floats(grid), fit_range=fit_range,
            measured_x=x, measured_y=y, measured_sigma=sigma, source=source, models=models,
        ))
    return out


def write_curves(curves: Sequence[TargetCurve], path: str | Path) -> Path:
    """``curves`` as JSON at ``path`` (NaN written as NaN, which :func:`read_curves` reads back); each
    data file's path relative to the folder of ``path`` (no machine's absolute paths)."""
    path = Path(path)
    folder = path.resolve().parent
    rows = []
    for c in curves:
        row = asdict(c)
        if c.source and Path(c.source).is_absolute():
            row["source"] = os.path.relpath(c.source, folder)
        rows.append(row)
    path.write_text(json.dumps(rows))
    return path


def read_curves(path: str | Path) -> list[TargetCurve]:
    """The curves written by :func:`write_curves`."""
    out = []
    for raw in json.loads(Path(path).read_text()):
        raw["models"] = [ModelCurve(**m) for m in raw["models"]]
        raw["fit_range"] = None if raw["fit_range"] is None else tuple(raw["fit_range"])
        out.append(TargetCurve(**raw))
    return out
