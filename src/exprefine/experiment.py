"""Experimental target data: loading a table, converting its abscissa, interpolating onto a model grid.

Tables are CSV (comma-separated, an optional header line naming the columns) or
whitespace-separated text; lines starting with '#' and blank lines are ignored.
The abscissa x is converted into the internal units (nm → Å, nm⁻¹ → Å⁻¹; angles
are kept in the unit given); y and σ are left as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .units import NM_IN_A

#: Accepted units of the x column: the factor into internal units and the internal unit's name.
X_UNITS: dict[str, tuple[float, str]] = {
    "angstrom": (1.0, "angstrom"),
    "nm": (NM_IN_A, "angstrom"),
    "inverse_angstrom": (1.0, "inverse_angstrom"),
    "inverse_nm": (1.0 / NM_IN_A, "inverse_angstrom"),
    "degree": (1.0, "degree"),
    "radian": (1.0, "radian"),
}


@dataclass
class ExperimentalData:
    """A measured curve y(x) with optional standard deviations.

    Attributes:
        x: [n] float64 abscissa, strictly increasing, in ``x_unit`` (internal units).
        y: [n] float64 measured values.
        sigma: [n] float64 positive standard deviations of y, or None.
        x_unit: unit of x after conversion: "angstrom", "inverse_angstrom", "degree" or "radian".
        quantity: what y is (the column's header name, or "column k").
        source: the file it was read from.
    """

    x: np.ndarray
    y: np.ndarray
    sigma: np.ndarray | None
    x_unit: str
    quantity: str
    source: str

    def __len__(self) -> int:
        return int(self.x.shape[0])


#: plausible extent of structural data per internal x unit: (largest x must exceed, largest x must stay below)
_PLAUSIBLE_MAX_X = {
    "angstrom": (1.5, 1000.0),        # r: beyond a bond length, below a box of 100 nm
    "inverse_angstrom": (0.5, 100.0),  # Q: beyond the first peak of any condensed phase, below 100 Å⁻¹
    "degree": (3.5, 360.0),           # angles in degrees reach beyond π
    "radian": (0.5, 6.3),             # ... in radians stay below 2π
}


def _check_x_range(path: Path, label: str, x: np.ndarray, x_unit: str, internal_unit: str) -> None:
    """A one-line error when the x values cannot be in the declared unit (e.g. nm read as Å)."""
    low, high = _PLAUSIBLE_MAX_X[internal_unit]
    top = float(x.max())
    if not low < top < high:
        raise ValueError(f"{path}: {label} ends at {top:g} {internal_unit} with x_unit {x_unit!r}, outside the "
                         f"plausible ({low:g}, {high:g}); is x_unit right?")


def load_table(
    path: str | Path,
    *,
    x_column: int | str = 0,
    y_column: int | str = 1,
    sigma_column: int | str | None = None,
    x_unit: str = "angstrom",
    delimiter: str | None = None,
) -> ExperimentalData:
    """Read x, y (and σ) columns of a CSV or whitespace table.

    Args:
        path: the file.
        x_column, y_column, sigma_column: 0-based column index, or the column's name in
            the header line.
        x_unit: unit of the x column in the file: one of "angstrom", "nm",
            "inverse_angstrom", "inverse_nm", "degree", "radian".
        delimiter: column separator; None guesses ',' when the first data line has a
            comma and whitespace otherwise.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: one line naming the file and the offending column/row: unknown unit,
            missing column, non-numeric value, NaN/inf, x not strictly increasing,
            σ ≤ 0, fewer than two data rows.
    """
    path = Path(path)
    if x_unit not in X_UNITS:
        raise ValueError(f"{path}: unknown x_unit {x_unit!r}; allowed: {', '.join(X_UNITS)}")
    if not path.exists():
        raise FileNotFoundError(f"experimental data file not found: {path}")
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read as text: {exc}") from exc

    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1)]
    lines = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if not lines:
        raise ValueError(f"{path}: no data rows")
    if delimiter is None:
        delimiter = "," if "," in lines[0][1] else None
    rows = [(n, _split(line, delimiter)) for n, line in lines]

    header: list[str] | None = None
    if not any(_is_number(field) for field in rows[0][1]):
        header = rows[0][1]
        rows = rows[1:]
    if len(rows) < 2:
        raise ValueError(f"{path}: needs at least 2 data rows, found {len(rows)}")

    def resolve(column: int | str, role: str) -> tuple[int, str]:
        if isinstance(column, str):
            if header is None:
                raise ValueError(f"{path}: has no header line, so {role} column {column!r} cannot be found by name")
            if column not in header:
                raise ValueError(f"{path}: {role} column {column!r} missing; header has {header}")
            return header.index(column), column
        if not isinstance(column, (int, np.integer)) or column < 0:
            raise ValueError(f"{path}: {role} column must be a name or a 0-based index ≥ 0, got {column!r}")
        label = header[column] if header is not None and column < len(header) else f"column {column}"
        return int(column), label

    x_idx, x_label = resolve(x_column, "x")
    y_idx, y_label = resolve(y_column, "y")
    columns = [(x_idx, x_label), (y_idx, y_label)]
    if sigma_column is not None:
        columns.append(resolve(sigma_column, "sigma"))

    values = np.empty((len(rows), len(columns)), dtype=np.float64)
    for r, (line_no, fields) in enumerate(rows):
        for c, (idx, label) in enumerate(columns):
            if idx >= len(fields):
                raise ValueError(
                    f"{path}: line {line_no}: {label!s} (index {idx}) missing, the row has {len(fields)} columns"
                )
            try:
                v = float(fields[idx])
            except ValueError:
                raise ValueError(f"{path}: line {line_no}: {label} value {fields[idx]!r} is not a number") from None
            if not math.isfinite(v):
                raise ValueError(f"{path}: line {line_no}: {label} value is {fields[idx]} (NaN/inf not allowed)")
            values[r, c] = v

    line_numbers = [n for n, _ in rows]
    x = values[:, 0]
    dx = np.diff(x)
    bad = np.nonzero(dx <= 0)[0]
    if bad.size:
        k = int(bad[0]) + 1
        raise ValueError(
            f"{path}: line {line_numbers[k]}: {x_label} is not strictly increasing ({x[k]:g} after {x[k - 1]:g})"
        )
    sigma = None
    if sigma_column is not None:
        sigma = values[:, 2].copy()
        bad = np.nonzero(sigma <= 0)[0]
        if bad.size:
            k = int(bad[0])
            raise ValueError(f"{path}: line {line_numbers[k]}: {columns[2][1]} = {sigma[k]:g} must be positive")

    factor, internal_unit = X_UNITS[x_unit]
    _check_x_range(path, x_label, x * factor, x_unit, internal_unit)
    quantity = y_label if header is not None else f"column {y_idx}"
    return ExperimentalData(
        x=x * factor,
        y=values[:, 1].copy(),
        sigma=sigma,
        x_unit=internal_unit,
        quantity=quantity,
        source=str(path),
    )


def interpolate(
    data: ExperimentalData, grid: torch.Tensor | np.ndarray | Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Linear interpolation of y (and σ) onto a model grid given in ``data.x_unit``.

    Args:
        data: the experimental curve.
        grid: [n_grid] abscissa of the model (e.g. RadialDistribution.grid(), Å).

    Returns:
        (y_on_grid, sigma_on_grid): [n_grid] float64 CPU tensors; sigma None if the data has none.

    Raises:
        ValueError: the grid reaches outside [x_min, x_max] of the data (both ranges named).
    """
    if isinstance(grid, torch.Tensor):
        g = grid.detach().cpu().double().numpy()
    else:
        g = np.asarray(grid, dtype=np.float64)
    if g.ndim != 1 or g.size == 0:
        raise ValueError(f"interpolate: grid must be a non-empty 1-D array, got shape {g.shape}")
    if not np.all(np.isfinite(g)):
        raise ValueError("interpolate: grid contains NaN/inf")
    lo, hi = float(data.x[0]), float(data.x[-1])
    tol = 1e-9 * max(1.0, abs(lo), abs(hi))
    if g.min() < lo - tol or g.max() > hi + tol:
        raise ValueError(
            f"model grid [{g.min():g}, {g.max():g}] {data.x_unit} extends outside the data range "
            f"[{lo:g}, {hi:g}] {data.x_unit} of {data.source}; restrict the grid (e.g. r_min/r_max)"
        )
    y = torch.from_numpy(np.interp(g, data.x, data.y))
    sigma = None if data.sigma is None else torch.from_numpy(np.interp(g, data.x, data.sigma))
    return y, sigma


def _split(line: str, delimiter: str | None) -> list[str]:
    return [field.strip() for field in line.split(delimiter)]


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True
