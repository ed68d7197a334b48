"""Experimental tables: formats, unit conversion, validation errors, interpolation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from exprefine.experiment import DataFileError, ExperimentalData, interpolate, load_table
from exprefine.observables import RadialDistribution

REPO = Path(__file__).resolve().parents[1]
#: the measured data sets, as copied unchanged into the examples
EXAMPLE_DATA = {"argon_85K": REPO / "examples" / "argon" / "data",
                "cg_water_296K": REPO / "examples" / "cg_water" / "data"}


def shared_file(folder: str, name: str) -> Path:
    path = EXAMPLE_DATA[folder] / name
    assert path.exists(), f"example data file missing: {path}"
    return path


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------- real files
def test_argon_g_r_loads_400_points():
    data = load_table(shared_file("argon_85K", "g_r.csv"))
    assert isinstance(data, ExperimentalData)
    assert len(data) == 400 and data.x.dtype == np.float64
    assert data.quantity == "g" and data.x_unit == "angstrom" and data.sigma is None
    assert data.x[0] == pytest.approx(0.0681) and data.x[-1] == pytest.approx(27.24, abs=0.01)
    # Named columns give the same table.
    named = load_table(shared_file("argon_85K", "g_r.csv"), x_column="r_angstrom", y_column="g")
    np.testing.assert_array_equal(named.y, data.y)


def test_argon_s_q_inverse_angstrom():
    data = load_table(shared_file("argon_85K", "S_q.csv"), x_unit="inverse_angstrom")
    assert len(data) == 400 and data.x_unit == "inverse_angstrom"
    k = int(np.argmax(data.y))
    assert data.x[k] == pytest.approx(1.997, abs=0.03) and data.y[k] == pytest.approx(2.70, abs=0.05)


def test_water_rdf_nm_converted_to_angstrom():
    path = shared_file("cg_water_296K", "O_O_rdf_nm.txt")
    data = load_table(path, x_unit="nm")
    raw = np.loadtxt(path)
    assert len(data) == 252 and data.x_unit == "angstrom" and data.quantity == "column 1"
    np.testing.assert_allclose(data.x, 10.0 * raw[:, 0])
    # read as Å the curve would end at 1 Å: refused, naming the unit
    with pytest.raises(ValueError, match="x_unit 'angstrom'"):
        load_table(path)
    assert data.x[-1] == pytest.approx(10.0)
    peak = data.x[int(np.argmax(data.y))]
    assert 2.7 < peak < 2.9


# ------------------------------------------------------------------ formats
def test_whitespace_with_comments_and_sigma(tmp_path):
    path = write(tmp_path, "q.txt", "# q in 1/nm   S   dS\n\n10  0.5  0.1\n20  1.5  0.2\n  30 1.0 0.1\n")
    data = load_table(path, sigma_column=2, x_unit="inverse_nm")
    np.testing.assert_allclose(data.x, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(data.sigma, [0.1, 0.2, 0.1])
    assert data.x_unit == "inverse_angstrom" and data.source == str(path)


def test_x_values_that_contradict_the_unit(tmp_path):
    """Angles in radians declared as degrees, Q in 1/nm declared as 1/Å: one line naming x_unit."""
    path = write(tmp_path, "adf.txt", "0.0 0.1\n1.5 1.0\n3.14 0.2\n")
    with pytest.raises(ValueError, match="x_unit 'degree'") as err:
        load_table(path, x_unit="degree")
    assert len(str(err.value).splitlines()) == 1 and "adf.txt" in str(err.value)
    path = write(tmp_path, "sq.txt", "5 0.1\n150 1.0\n300 1.0\n")
    with pytest.raises(ValueError, match="inverse_angstrom"):
        load_table(path, x_unit="inverse_angstrom")
    assert load_table(path, x_unit="inverse_nm").x[-1] == pytest.approx(30.0)


def test_csv_without_header_and_angles(tmp_path):
    path = write(tmp_path, "adf.csv", "0.0,1.0\n90.0,2.0\n180.0,0.5\n")
    data = load_table(path, x_unit="degree")
    np.testing.assert_allclose(data.x, [0.0, 90.0, 180.0])
    assert data.x_unit == "degree" and data.quantity == "column 1"


# ------------------------------------------------------------------- errors
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.csv"):
        load_table(tmp_path / "nothere.csv")


def test_unknown_unit_names_allowed(tmp_path):
    path = write(tmp_path, "a.csv", "1,2\n2,3\n")
    with pytest.raises(ValueError, match=r"unknown x_unit 'pm'.*angstrom, nm, inverse_angstrom, inverse_nm, degree, radian"):
        load_table(path, x_unit="pm")


@pytest.mark.parametrize(
    "text, kwargs, pattern",
    [
        ("r,g\n1,2\n2,3\n", {"y_column": "h"}, r"bad\.csv: y column 'h' missing; header has \['r', 'g'\]"),
        ("1,2\n2,3\n", {"y_column": "g"}, r"bad\.csv: has no header line.*'g'"),
        ("r,g\n1,2\n2,3\n", {"y_column": 4}, r"bad\.csv: line 2: column 4 \(index 4\) missing"),
        ("r,g\n1,2\n2\n", {}, r"bad\.csv: line 3: g \(index 1\) missing, the row has 1 columns"),
        ("r,g\n1,2\n2,abc\n", {}, r"bad\.csv: line 3: g value 'abc' is not a number"),
        ("r,g\n1,2\n2,nan\n", {}, r"bad\.csv: line 3: g value is nan \(NaN/inf"),
        ("r,g\n1,2\ninf,3\n", {}, r"bad\.csv: line 3: r value is inf"),
        ("r,g\n1,2\n3,3\n3,4\n", {}, r"bad\.csv: line 4: r is not strictly increasing \(3 after 3: a repeated x\)"),
        ("r,g\n2,2\n1,3\n", {}, r"bad\.csv: line 3: r is not strictly increasing"),
        ("r,g,s\n1,2,0.1\n2,3,0\n", {"sigma_column": "s"}, r"bad\.csv: line 3: s = 0 must be positive"),
        ("r,g,s\n1,2,-0.1\n2,3,1\n", {"sigma_column": 2}, r"bad\.csv: line 2: s = -0.1 must be positive"),
        ("r,g\n1,2\n", {}, r"bad\.csv: needs at least 2 data rows, found 1"),
        ("# only a comment\n", {}, r"bad\.csv: no data rows"),
    ],
)
def test_validation_errors_are_one_line_and_name_the_file(tmp_path, text, kwargs, pattern):
    path = write(tmp_path, "bad.csv", text)
    with pytest.raises(ValueError, match=pattern) as info:
        load_table(path, **kwargs)
    assert "\n" not in str(info.value)


# -------------------------------------------------------------- interpolate
def test_interpolate_linear_and_range_check(tmp_path):
    path = write(tmp_path, "lin.txt", "1 10 1\n2 20 3\n4 40 5\n")
    data = load_table(path, sigma_column=2)
    y, sigma = interpolate(data, torch.tensor([1.0, 1.5, 3.0, 4.0], dtype=torch.float64))
    torch.testing.assert_close(y, torch.tensor([10.0, 15.0, 30.0, 40.0], dtype=torch.float64))
    torch.testing.assert_close(sigma, torch.tensor([1.0, 2.0, 4.0, 5.0], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"grid \[0\.5, 3\] angstrom extends outside the data range \[1, 4\]"):
        interpolate(data, np.array([0.5, 3.0]))
    with pytest.raises(ValueError, match=r"grid \[2, 4\.5\].*\[1, 4\]"):
        interpolate(data, [2.0, 4.5])


def test_interpolate_argon_onto_rdf_grid():
    data = load_table(shared_file("argon_85K", "g_r.csv"))
    rdf = RadialDistribution(r_max_A=12.0, r_min_A=2.0, n_bins=100)
    y, sigma = interpolate(data, rdf.grid())
    assert y.shape == (100,) and sigma is None and y.dtype == torch.float64
    peak = float(rdf.grid()[torch.argmax(y)])
    assert 3.5 < peak < 3.9  # first peak of liquid argon near 3.7 Å
    with pytest.raises(ValueError, match="outside the data range"):
        interpolate(data, RadialDistribution(r_max_A=12.0, n_bins=100).grid())  # starts at 0.06 Å < 0.068 Å


def test_tidy_sorts_and_averages_repeated_x(tmp_path):
    """A digitised curve: x steps back and repeats; refused with advice, read with tidy=True."""
    path = write(tmp_path, "digitised.txt", "1.0 0.5\n2.0 1.0\n1.5 0.8\n2.0 1.2\n3.0 1.1\n")
    with pytest.raises(DataFileError, match=r"line 3: column 0 is not strictly increasing.*tidy: true") as info:
        load_table(path)
    assert info.value.argument == "x_column" and "\n" not in str(info.value)
    data = load_table(path, tidy=True)
    assert data.x.tolist() == [1.0, 1.5, 2.0, 3.0]
    assert data.y.tolist() == pytest.approx([0.5, 0.8, 1.1, 1.1])
    assert "reordered" in data.tidy_note and "1 rows with a repeated x averaged" in data.tidy_note
    assert load_table(write(tmp_path, "clean.txt", "1 2\n2 3\n"), tidy=True).tidy_note is None


def test_data_file_errors_name_the_argument(tmp_path):
    path = write(tmp_path, "d.csv", "r,g\n1,2\n2,3\n")
    with pytest.raises(DataFileError) as info:
        load_table(path, y_column="gr")
    assert (info.value.argument, info.value.value) == ("y_column", "gr")
    with pytest.raises(DataFileError) as info:
        load_table(path, x_unit="degree")  # an angle that ends at 2°: not plausible
    assert (info.value.argument, info.value.value) == ("x_unit", "degree")
