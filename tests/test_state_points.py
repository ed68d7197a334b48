"""Several state points in one config and one refinement; old single-system runs still resume."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch
import yaml

from conftest import REPO
from exprefine.config import ConfigError, load_config, parse_config
from exprefine.workflows import run_refinement

DATA = str(REPO / "examples" / "argon" / "data" / "g_r.csv")
SAMPLING = {"temperature_K": 85.0, "timestep_fs": 10.0, "friction_per_ps": 2.0, "equilibration_ps": 0.5,
            "production_ps": 1.0, "frame_interval_fs": 100.0, "resample_equilibration_ps": 0.2, "seed": 3}
LJ = {"kind": "lennard_jones", "species": ["Ar"], "sigma_A": 3.6, "epsilon_K": 100.0, "cutoff_A": 5.5}


def _target(r_max: float = 5.5) -> dict:
    return {"name": "g_r", "observable": {"kind": "rdf", "species": ["Ar", "Ar"], "r_max_A": r_max, "bin_width_A": 0.1},
            "data": {"file": DATA, "x_column": "r_angstrom", "y_column": "g", "x_unit": "angstrom"},
            "fit_range_A": [3.0, r_max - 0.1]}


def _lattice(density: float) -> dict:
    return {"element": "Ar", "kind": "fcc", "number_density_per_A3": density, "repeat": 2}


def two_state_points(run_dir, optimizer: str = "adam", n_updates: int = 3) -> dict:
    """32-atom LJ argon at 85 K / 0.02125 Å⁻³ and 120 K / 0.019 Å⁻³ (a second seed), against one g(r) file."""
    return {
        "run_dir": str(run_dir), "threads": 1, "device": "cpu",
        "systems": [
            {"name": "cold", "lattice": _lattice(0.02125), "targets": [_target()]},
            {"name": "hot", "lattice": _lattice(0.019), "sampling": {"temperature_K": 120.0, "seed": 11},
             "weight": 0.5, "targets": [_target(5.7)]},
        ],
        "potential": {"terms": [LJ]},
        "sampling": dict(SAMPLING),
        "refine": {"n_updates": n_updates, "learning_rate": 0.03, "chunk_size": 10, "final_check": False,
                   "ess_threshold": 0.95, "optimizer": optimizer},
    }


def test_state_points_take_shared_sampling_with_overrides():
    cfg = parse_config(two_state_points("/tmp/x"))
    cold, hot = cfg.state_points()
    assert (cold.name, cold.sampling.temperature_K, cold.sampling.seed) == ("cold", 85.0, 3)
    assert (hot.name, hot.sampling.temperature_K, hot.sampling.seed, hot.sampling.timestep_fs) == ("hot", 120.0, 11, 10.0)
    assert hot.weight == 0.5 and len(hot.targets) == 1


@pytest.mark.parametrize("change, message", [
    (lambda raw: raw["systems"][1].update(targets=[]), "systems.1: .*state point 'hot' has no targets"),
    (lambda raw: raw["systems"][1].update(name="cold"), "state point names must be unique; repeated: \\['cold'\\]"),
    (lambda raw: raw["systems"][1]["sampling"].update(temprature_K=100.0),
     "systems.1.sampling: .*unknown sampling key 'temprature_K' \\(did you mean 'temperature_K'\\?\\)"),
    (lambda raw: raw["systems"][0]["sampling"].update(timestep_fs=-1.0), "state point 'cold': sampling: "),
    (lambda raw: raw.update(system={"lattice": _lattice(0.02)}), "give exactly one of system"),
])
def test_bad_state_points_fail_in_one_line(change, message):
    raw = copy.deepcopy(two_state_points("/tmp/x"))
    raw["systems"][0].setdefault("sampling", {})
    change(raw)
    with pytest.raises(ConfigError, match=message) as info:
        parse_config(raw, source="c.yaml")
    assert "\n" not in str(info.value)


def test_two_state_points_refine_with_per_point_outputs_and_resume(tmp_path):
    """Three updates in one go equal two updates and a resumed third; each state point has its own folder."""
    full = run_refinement(parse_config(two_state_points(tmp_path / "full")), progress=False)
    run_refinement(parse_config(two_state_points(tmp_path / "split", n_updates=2)), progress=False)
    resumed = run_refinement(parse_config(two_state_points(tmp_path / "split")), resume=True, progress=False)
    assert [r.loss for r in resumed.history] == pytest.approx([r.loss for r in full.history], rel=1e-12)
    assert set(full.history[0].point_loss) == {"cold", "hot"}
    assert full.history[0].loss == pytest.approx(sum(full.history[0].point_loss.values()), rel=1e-12)
    for name in ("cold", "hot"):
        assert (tmp_path / "full" / name / "trajectories" / "trajectory_0000.pt").exists()
        assert (tmp_path / "full" / name / "curves.json").exists()
    ck = torch.load(tmp_path / "split" / "checkpoints" / "latest.pt", weights_only=True)
    assert [p["name"] for p in ck["state_points"]] == ["cold", "hot"] and ck["next_update"] == 3
    rows = [json.loads(line) for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows] == [0, 1, 2]
    # only state points below the threshold resample, and each is logged
    assert all(set(r.resampled_points) <= {"cold", "hot"} for r in full.history)


def test_a_run_written_before_state_points_resumes_to_the_same_parameters(tmp_path):
    """tests/data/legacy_run: 2 Adam updates written by the version before issue 18; resumed to 4."""
    run = tmp_path / "legacy"
    shutil.copytree(REPO / "tests" / "data" / "legacy_run", run)
    raw = {"run_dir": str(run), "threads": 1, "system": {"lattice": _lattice(0.02125)},
           "potential": {"terms": [LJ]}, "sampling": dict(SAMPLING), "targets": [_target()],
           "refine": {"n_updates": 4, "learning_rate": 0.03, "chunk_size": 10, "final_check": False,
                      "ess_threshold": 0.95}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    result = run_refinement(load_config(tmp_path / "c.yaml"), resume=True, progress=False)
    assert [r.update for r in result.history] == [0, 1, 2, 3]
    state = torch.load(run / "final_model.pt", weights_only=True)["potential_state"]
    assert float(state["terms.0.log_sigma"]) == pytest.approx(1.1994519047177494, rel=1e-12, abs=0)
    assert float(state["terms.0.log_epsilon"]) == pytest.approx(-4.8353258708317055, rel=1e-12, abs=0)
    ck = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert "state_points" not in ck and ck["trajectory_file"].startswith("trajectory_")
