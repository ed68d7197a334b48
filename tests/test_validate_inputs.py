"""`exprefine config validate` opens every file a config names: each bad input of a new user fails
in one line naming the file, the key and the value, in well under 5 s, without running anything."""

from __future__ import annotations

import time

import pytest
import yaml

from conftest import REPO
from exprefine import workflows
from exprefine.builders import build_targets
from exprefine.cli.main import main
from exprefine.config import ConfigError, load_config

ARGON_DATA = REPO / "examples" / "argon" / "data" / "g_r.csv"


def new_user_config(tmp_path, data_file: str = "gr.txt", **target) -> dict:
    """A new user's LJ liquid: a lattice start and a digitised, headerless, space-separated g(r)."""
    return {
        "run_dir": "runs/new",
        "system": {"lattice": {"element": "Ar", "kind": "fcc", "number_density_per_A3": 0.02125, "repeat": 3}},
        "potential": {"terms": [{"kind": "lennard_jones", "species": ["Ar"], "sigma_A": 3.4, "epsilon_K": 120.0,
                                 "cutoff_A": 8.0}]},
        "sampling": {"temperature_K": 85.0, "timestep_fs": 10.0, "equilibration_ps": 1.0, "production_ps": 1.0,
                     "frame_interval_fs": 100.0},
        "targets": [{"name": "g_r", "observable": {"kind": "rdf", "species": ["Ar", "Ar"], "r_max_A": 8.0},
                     "data": {"file": data_file, "x_column": 0, "y_column": 1}, "fit_range_A": [3.0, 7.5],
                     **target}],
    }


def digitised(tmp_path, name: str = "gr.txt", rows: list[tuple[float, float]] | None = None):
    """A headerless two-column g(r), 51 points from 0.5 to 10.5 Å (a digitised figure)."""
    rows = rows if rows is not None else [(0.5 + 0.2 * k, 1.0 + 0.1 * (k % 3)) for k in range(51)]
    (tmp_path / name).write_text("".join(f"{x:.3f} {y:.3f}\n" for x, y in rows))


def validate(tmp_path, raw: dict, capsys) -> tuple[int, str, str, float]:
    path = tmp_path / "new.yaml"
    path.write_text(yaml.safe_dump(raw))
    t0 = time.perf_counter()
    with pytest.raises(SystemExit) as code:
        main(["config", "validate", str(path), "--quiet"])
    elapsed = time.perf_counter() - t0
    captured = capsys.readouterr()
    return int(code.value.code), captured.out, captured.err.strip(), elapsed


def test_a_good_config_is_valid_and_repeat_may_be_one_number(tmp_path, capsys):
    digitised(tmp_path)
    code, out, err, _ = validate(tmp_path, new_user_config(tmp_path), capsys)
    assert code == 0, err
    assert "new.yaml: valid (system: Ar 108; data: " in out and "gr.txt (51 points)" in out
    cfg = load_config(tmp_path / "new.yaml")
    assert cfg.system.lattice is not None and cfg.system.lattice.repeat == (3, 3, 3)


def _bad_inputs(tmp_path):
    """(what, config, key, value) of each bad input a new user met."""
    digitised(tmp_path)
    digitised(tmp_path, "backwards.txt", [(1.0, 0.0), (2.0, 1.0), (1.5, 0.8), (3.0, 1.0)])
    digitised(tmp_path, "repeats.txt", [(1.0, 0.0), (2.0, 1.0), (2.0, 1.1), (3.0, 1.0)])
    cases = []
    raw = new_user_config(tmp_path)
    raw["targets"][0]["data"]["y_column"] = 2
    cases.append(("column missing", raw, "targets.0.data.y_column", "2"))
    raw = new_user_config(tmp_path)
    raw["targets"][0]["data"]["y_column"] = "g"
    cases.append(("column by name, no header", raw, "targets.0.data.y_column", "'g'"))
    raw = new_user_config(tmp_path, fit_range_A=[11.0, 14.0])
    cases.append(("fit range misses the data", raw, "targets.0.fit_range_A", "[11.0, 14.0]"))
    raw = new_user_config(tmp_path)
    raw["system"]["lattice"]["element"] = "Xx"
    cases.append(("no such element", raw, "system.lattice.element", "'Xx'"))
    raw = new_user_config(tmp_path)
    raw["potential"]["terms"][0]["species"] = ["Kr"]
    cases.append(("element not in the potential", raw, "potential.terms.0.species", "['Kr']"))
    raw = new_user_config(tmp_path)
    raw["sampling"]["temprature_K"] = raw["sampling"].pop("temperature_K")
    cases.append(("typo in a key", raw, "sampling.temprature_K", "did you mean 'temperature_K'"))
    cases.append(("x goes backwards", new_user_config(tmp_path, "backwards.txt"), "targets.0.data.x_column", "0"))
    cases.append(("x repeats", new_user_config(tmp_path, "repeats.txt"), "targets.0.data.x_column", "0"))
    cases.append(("no data file", new_user_config(tmp_path, "missing.txt"), "targets.0.data.file", "missing.txt"))
    raw = new_user_config(tmp_path)
    raw["targets"][0]["data"]["x_unit"] = "inverse_angstrom"
    cases.append(("unit of Q for an r grid", raw, "targets.0", "'inverse_angstrom'"))
    raw = new_user_config(tmp_path)
    raw["targets"][0]["data"]["composition"] = {"Ar": 1, "Kr": 1}
    cases.append(("stated composition", raw, "targets.0.data.composition", "'Kr'"))
    return cases


def test_each_bad_input_fails_in_one_line_naming_file_key_and_value(tmp_path, capsys):
    for what, raw, key, value in _bad_inputs(tmp_path):
        code, out, err, elapsed = validate(tmp_path, raw, capsys)
        assert code == 2, (what, out, err)
        assert len(err.splitlines()) == 1, (what, err)
        assert "new.yaml" in err and key in err and value in err, (what, err)
        assert elapsed < 5.0, (what, elapsed)


def test_advice_for_untidy_and_headerless_files(tmp_path, capsys):
    digitised(tmp_path, "backwards.txt", [(1.0, 0.0), (2.0, 1.0), (1.5, 0.8), (3.0, 1.0), (4.0, 1.0)])
    _, _, err, _ = validate(tmp_path, new_user_config(tmp_path, "backwards.txt", fit_range_A=[1.0, 4.0]), capsys)
    assert "x goes backwards" in err and "tidy: true" in err
    raw = new_user_config(tmp_path, "backwards.txt", fit_range_A=[1.0, 4.0])
    raw["targets"][0]["data"]["tidy"] = True
    code, out, err, _ = validate(tmp_path, raw, capsys)
    assert code == 0, err
    assert "note:" in out and "2 rows reordered by x" in out  # ... and says what it changed
    digitised(tmp_path)
    raw = new_user_config(tmp_path)
    raw["targets"][0]["data"]["x_column"] = "r"
    _, _, err, _ = validate(tmp_path, raw, capsys)
    assert "x_column: 0, y_column: 1" in err


def test_a_fit_range_past_the_data_is_clipped_with_a_note(tmp_path, capsys):
    digitised(tmp_path, rows=[(0.5 + 0.2 * k, 1.0) for k in range(31)])  # ends at 6.5 Å
    code, out, err, _ = validate(tmp_path, new_user_config(tmp_path), capsys)
    assert code == 0, err
    assert "note:" in out and "fit_range_A [3, 7.5] runs past the data [0.5, 6.5]" in out
    cfg = load_config(tmp_path / "new.yaml")
    with pytest.warns(UserWarning, match="runs past the data"):
        (target,) = build_targets(cfg)
    assert float(target.observable.grid()[target.mask].max()) <= 6.5


def test_a_fit_range_past_the_grid_is_clipped_with_a_note(tmp_path, capsys):
    digitised(tmp_path)
    code, out, err, _ = validate(tmp_path, new_user_config(tmp_path, fit_range_A=[3.0, 10.0]), capsys)
    assert code == 0, err
    assert "runs past the observable's grid" in out


def test_sample_reads_the_data_before_running_md(tmp_path, monkeypatch):
    """A bad data file ends `exprefine sample` before the MD, not after it."""
    digitised(tmp_path, "repeats.txt", [(1.0, 0.0), (2.0, 1.0), (2.0, 1.1), (3.0, 1.0)])
    path = tmp_path / "new.yaml"
    path.write_text(yaml.safe_dump(new_user_config(tmp_path, "repeats.txt")))

    def no_md(*args, **kwargs):
        raise AssertionError("the MD ran before the data were read")

    monkeypatch.setattr(workflows, "sample_groups", no_md)
    with pytest.raises(ValueError, match="repeats.txt.*not strictly increasing"):
        workflows.run_sampling(load_config(path), progress=False)


def test_unknown_element_names_file_and_key():
    raw = yaml.safe_load(new_user_config_text())
    raw["potential"]["terms"][0]["species"] = ["ar"]
    from exprefine.config import parse_config

    with pytest.raises(ConfigError) as info:
        parse_config(raw, "new.yaml")
    assert str(info.value) == "new.yaml: potential.terms.0.lennard_jones.species.0: unknown element symbol 'ar' " \
                              "(did you mean 'Ar'?)"


def new_user_config_text() -> str:
    return yaml.safe_dump(new_user_config(None))
