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


class DataFileError(ValueError):
    """A data file that cannot be used, in one line naming the file; ``argument`` names the
    :func:`load_table` argument at fault (``file``, ``x_column``, ``y_column``, ``sigma_column``,
    ``x_unit``) and ``value`` its value, so a config check can name its own key."""

    def __init__(self, message: str, argument: str = "file", value: object = None) -> None:
        super().__init__(message)
        self.argument = argument
        self.value = value


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
        tidy_note: what ``tidy`` changed (rows sorted, repeated x averaged), or None.
    """

    x: np.ndarray
    y: np.ndarray
    sigma: np.ndarray | None
    x_unit: str
    quantity: str
    source: str
    tidy_note: str | None = None

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
        raise DataFileError(f"{path}: {label} ends at {top:g} {internal_unit} with x_unit {x_unit!r}, outside the "
                         f"plausible ({low:g}, {high:g}); is x_unit right?", "x_unit", x_unit)


def load_table(
    path: str | Path,
    *,
    x_column: int | str = 0,
    y_column: int | str = 1,
    sigma_column: int | str | None = None,
    x_unit: str = "angstrom",
    delimiter: str | None = None,
    tidy: bool = False,
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
        tidy: sort the rows by x and average the rows that share an x (y and σ averaged),
            as a digitised curve often needs; without it, x must increase strictly.

    Raises:
        FileNotFoundError: the file does not exist.
        DataFileError: (a ValueError) one line naming the file and the offending column/row: unknown unit,
            missing column, non-numeric value, NaN/inf, x not strictly increasing,
            σ ≤ 0, fewer than two data rows.
    """
    path = Path(path)
    if x_unit not in X_UNITS:
        raise DataFileError(f"{path}: unknown x_unit {x_unit!r}; allowed: {', '.join(X_UNITS)}", "x_unit", x_unit)
    if not path.exists():
        raise FileNotFoundError(f"experimental data file not found: {path}")
    if not path.is_file():
        raise DataFileError(f"{path}: not a regular file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{path}: cannot read as text: {exc}") from exc

    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1)]
    lines = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if not lines:
        raise DataFileError(f"{path}: no data rows")
    if delimiter is None:
        delimiter = "," if "," in lines[0][1] else None
    rows = [(n, _split(line, delimiter)) for n, line in lines]

    header: list[str] | None = None
    if not any(_is_number(field) for field in rows[0][1]):
        header = rows[0][1]
        rows = rows[1:]
    if len(rows) < 2:
        raise DataFileError(f"{path}: needs at least 2 data rows, found {len(rows)}")

    def resolve(column: int | str, role: str) -> tuple[int, str]:
        argument = f"{role}_column"
        if isinstance(column, str):
            if header is None:
                raise DataFileError(f"{path}: has no header line, so {role} column {column!r} cannot be found by name "
                                    f"(use the column's 0-based index, e.g. x_column: 0, y_column: 1)", argument, column)
            if column not in header:
                raise DataFileError(f"{path}: {role} column {column!r} missing; header has {header}", argument, column)
            return header.index(column), column
        if not isinstance(column, (int, np.integer)) or column < 0:
            raise DataFileError(f"{path}: {role} column must be a name or a 0-based index ≥ 0, got {column!r}",
                                argument, column)
        label = header[column] if header is not None and column < len(header) else f"column {column}"
        return int(column), label

    x_idx, x_label = resolve(x_column, "x")
    y_idx, y_label = resolve(y_column, "y")
    columns = [(x_idx, x_label, "x_column", x_column), (y_idx, y_label, "y_column", y_column)]
    if sigma_column is not None:
        columns.append((*resolve(sigma_column, "sigma"), "sigma_column", sigma_column))

    values = np.empty((len(rows), len(columns)), dtype=np.float64)
    for r, (line_no, fields) in enumerate(rows):
        for c, (idx, label, argument, given) in enumerate(columns):
            if idx >= len(fields):
                raise DataFileError(
                    f"{path}: line {line_no}: {label!s} (index {idx}) missing, the row has {len(fields)} columns",
                    argument, given)
            try:
                v = float(fields[idx])
            except ValueError:
                raise DataFileError(f"{path}: line {line_no}: {label} value {fields[idx]!r} is not a number",
                                    argument, given) from None
            if not math.isfinite(v):
                raise DataFileError(f"{path}: line {line_no}: {label} value is {fields[idx]} (NaN/inf not allowed)",
                                    argument, given)
            values[r, c] = v

    line_numbers = [n for n, _ in rows]
    if sigma_column is not None:
        bad = np.nonzero(values[:, 2] <= 0)[0]
        if bad.size:
            k = int(bad[0])
            raise DataFileError(f"{path}: line {line_numbers[k]}: {columns[2][1]} = {values[k, 2]:g} must be positive",
                                "sigma_column", sigma_column)
    note = None
    if tidy:
        values, note = _tidy(values)
    x = values[:, 0]
    bad = np.nonzero(np.diff(x) <= 0)[0]
    if bad.size:
        k = int(bad[0]) + 1
        what = "a repeated x" if x[k] == x[k - 1] else "x goes backwards"
        raise DataFileError(
            f"{path}: line {line_numbers[k]}: {x_label} is not strictly increasing ({x[k]:g} after {x[k - 1]:g}: "
            f"{what}); sort the rows by x and merge repeated x, or set tidy: true in the target's data section",
            "x_column", x_column)
    sigma = values[:, 2].copy() if sigma_column is not None else None

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
        tidy_note=note,
    )


def _tidy(values: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Rows [n, k] (x first) sorted by x, rows with equal x averaged column by column; what changed."""
    order = np.argsort(values[:, 0], kind="stable")
    moved = int(np.count_nonzero(order != np.arange(len(order))))
    ordered = values[order]
    unique_x, start, counts = np.unique(ordered[:, 0], return_index=True, return_counts=True)
    merged = np.add.reduceat(ordered, start, axis=0) / counts[:, None]
    merged[:, 0] = unique_x
    parts = ([f"{moved} rows reordered by x"] if moved else []) + \
        ([f"{int((counts - 1).sum())} rows with a repeated x averaged"] if (counts > 1).any() else [])
    return merged, "; ".join(parts) or None


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
