"""examples/lammps/compare_with_exprefine.py --smoke: the comparison runs and names every target."""

from conftest import REPO, import_script


def test_smoke_compares_two_halves_of_one_run_within_a_few_standard_errors(tmp_path):
    script = import_script(REPO / "examples" / "lammps", "compare_with_exprefine")
    record = script.main(["--smoke", "--out", str(tmp_path / "c.json")])
    assert [t["name"] for t in record["targets"]] == ["sq_low_q", "sq_high_q", "pdf"]
    assert record["n_frames_lammps"] == record["n_frames_exprefine"] == 50
    # halves of one 5-ps run: the same ensemble, short blocks (measured 2.4-2.6)
    assert all(0.2 < t["mean_z2_statistical"] < 10.0 for t in record["targets"])
    assert abs(record["spacing_A"]["z"]) < 4.0
    assert (tmp_path / "c.json").exists()
    assert sorted(p.name for p in tmp_path.glob("c_*.png")) == ["c_pdf.png", "c_sq_high_q.png", "c_sq_low_q.png"]
    assert record["plots"] and all(p.endswith(".png") for p in record["plots"])


def test_skip_ps_leaves_out_the_early_frames_of_both_runs(tmp_path):
    script = import_script(REPO / "examples" / "lammps", "compare_with_exprefine")
    # halves of the run (a frame every 50 fs from 1.05 ps): 1.05–3.5 and 3.55–6 ps; from 3 ps on 11 and 50 stay
    record = script.main(["--smoke", "--skip-ps", "3.0"])
    assert (record["n_frames_lammps"], record["n_frames_exprefine"], record["skip_ps"]) == (11, 50, 3.0)
