"""examples/argon/two_state_points.py --smoke: both state points (measured 85 K g(r), synthetic 120 K
g(r) made on the spot by the generator) in one refinement of 32 atoms each, in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPO, import_script
from exprefine.config import load_config

ARGON = REPO / "examples" / "argon"


def _script():
    return import_script(ARGON, "two_state_points")


def test_config_has_the_measured_and_the_synthetic_state_point():
    if not (ARGON / "data" / "synthetic_120K" / "g_r.csv").exists():
        pytest.skip("synthetic data not made yet")
    cfg = load_config(ARGON / "two_state_points.yaml")
    cold, hot = cfg.state_points()
    assert (cold.name, cold.sampling.temperature_K, cold.sampling.seed) == ("T85_yarnell", 85.0, 0)
    assert (hot.name, hot.sampling.temperature_K, hot.sampling.seed, hot.sampling.equilibration_ps) == (
        "T120_synthetic", 120.0, 1, 5.0)
    assert cold.targets[0].data.file.name == "g_r.csv"  # Yarnell et al. 1973


def test_smoke_refines_both_state_points(tmp_path):
    script = _script()
    assert script.main(["--smoke", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "two_state_points.json").read_text())
    assert set(summary["rmse_before"]) == {"T85_yarnell", "T120_synthetic"}
    assert summary["n_updates"] == 1 and summary["n_samplings"] == 2  # one trajectory per state point
    assert summary["sigma_A_before"] == pytest.approx(3.60) and summary["epsilon_K_before"] == pytest.approx(71.88)
    assert summary["sigma_A_after"] != pytest.approx(3.60)  # one step was taken
    assert (tmp_path / "g_r_synthetic_120K.csv").read_text().startswith("r_angstrom,g\n")
    for name in ("T85_yarnell", "T120_synthetic"):
        assert (tmp_path / "run" / name / "target_g_r.png").exists()


def test_distributed_benchmark_runs_the_config_with_one_and_two_ranks(tmp_path):
    bench = import_script(REPO / "benchmarks", "distributed_argon")
    one, two = bench.command(1, tmp_path / "a", 3), bench.command(2, tmp_path / "a", 3)
    assert one[1:4] == ["-m", "exprefine", "refine"]
    assert two[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    assert two[5:] == one[1:]  # the same refinement behind the launcher
    overrides = [one[k + 1] for k, arg in enumerate(one) if arg == "--set"]
    if (ARGON / "data" / "synthetic_120K" / "g_r.csv").exists():
        cfg = load_config(bench.CONFIG, overrides)
        assert (cfg.refine.n_updates, cfg.refine.final_check, cfg.run_dir) == (3, False, tmp_path / "a")
    # the replica-group layout: one state point, two MD chains
    grouped = bench.command(2, tmp_path / "g", 3, layout="groups")
    config = grouped.index("refine") + 1
    cfg = load_config(Path(grouped[config]), [grouped[k + 1] for k, arg in enumerate(grouped) if arg == "--set"])
    (point,) = cfg.state_points()
    assert (point.system.n_replicas, point.system.replica_groups, cfg.run_dir) == (2, 2, tmp_path / "g")
