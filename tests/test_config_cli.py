"""Config validation (one-line errors naming the key) and the command line, end to end on a tiny system."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import REPO
from exprefine.builders import build_potential, build_state, build_targets, sampler_settings
from exprefine.cli.main import main
from exprefine.config import ConfigError, load_config
from exprefine.refine import RefinerSettings

ARGON_DATA = REPO / "examples" / "argon" / "data" / "g_r.csv"


def tiny_config(run_dir: Path, **refine) -> dict:
    """108 argon atoms, a few hundred MD steps per trajectory: seconds per update."""
    return {
        "run_dir": str(run_dir),
        "system": {"lattice": {"element": "Ar", "kind": "fcc", "number_density_per_A3": 0.02125, "repeat": [3, 3, 3]}},
        "potential": {"terms": [{"kind": "lennard_jones", "species": ["Ar"], "sigma_A": 3.6, "epsilon_K": 71.88,
                                 "cutoff_A": 8.0}]},
        "sampling": {"temperature_K": 85.0, "timestep_fs": 10.0, "equilibration_ps": 1.0, "production_ps": 1.0,
                     "frame_interval_fs": 100.0, "resample_equilibration_ps": 0.3, "seed": 3},
        "targets": [{"name": "g_r", "observable": {"kind": "rdf", "species": ["Ar", "Ar"], "r_max_A": 8.0},
                     "data": {"file": str(ARGON_DATA), "x_column": "r_angstrom", "y_column": "g"},
                     "fit_range_A": [3.0, 8.0]}],
        "refine": {"n_updates": 2, "learning_rate": 0.03, **refine},
    }


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_unknown_key_is_named(tmp_path):
    raw = tiny_config(tmp_path / "run")
    raw["sampling"]["temperatur_K"] = 85.0
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path / "c.yaml", raw))
    msg = str(err.value)
    assert "sampling.temperatur_K" in msg and "unknown key" in msg and "c.yaml" in msg
    assert len(msg.splitlines()) == 1


def test_missing_key_and_contradictions(tmp_path):
    raw = tiny_config(tmp_path / "run")
    del raw["sampling"]["timestep_fs"]
    with pytest.raises(ConfigError, match="sampling.timestep_fs: required key missing"):
        load_config(write(tmp_path / "a.yaml", raw))
    raw = tiny_config(tmp_path / "run")
    raw["potential"]["terms"][0]["epsilon_eV"] = 0.01
    with pytest.raises(ConfigError, match="exactly one of epsilon_eV and epsilon_K"):
        load_config(write(tmp_path / "b.yaml", raw))
    raw = tiny_config(tmp_path / "run")
    raw["potential"]["terms"][0]["kind"] = "morse"
    with pytest.raises(ConfigError, match="potential.terms.0"):
        load_config(write(tmp_path / "d.yaml", raw))


def test_overrides_and_relative_paths(tmp_path):
    raw = tiny_config("runs/x")
    raw["targets"][0]["data"]["file"] = "data/g.csv"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "g.csv").write_text(ARGON_DATA.read_text())
    cfg = load_config(write(tmp_path / "c.yaml", raw), ["refine.n_updates=7", "targets.0.weight=2.5",
                                                       "sampling.seed=9"])
    assert cfg.refine.n_updates == 7 and cfg.targets[0].weight == 2.5 and cfg.sampling.seed == 9
    assert cfg.run_dir == (tmp_path / "runs" / "x").resolve()
    assert cfg.targets[0].data.file == (tmp_path / "data" / "g.csv").resolve()
    with pytest.raises(ConfigError, match="index 3 out of range"):
        load_config(tmp_path / "c.yaml", ["targets.3.weight=1"])
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(tmp_path / "c.yaml", ["refine.n_updates"])


def test_builders_give_consistent_objects(tmp_path):
    cfg = load_config(write(tmp_path / "c.yaml", tiny_config(tmp_path / "run")))
    state = build_state(cfg)
    assert state.n_atoms == 108
    assert float(state.n_atoms / state.volume_A3()[0]) == pytest.approx(0.02125, rel=1e-12)
    pot = build_potential(cfg)
    assert pot.summary()["sigma_A[Ar-Ar]"] == pytest.approx(3.6)
    assert pot.summary()["epsilon_K[Ar-Ar]"] == pytest.approx(71.88)
    assert not pot.concurrent  # terms in sequence unless the config asks
    assert build_potential(load_config(tmp_path / "c.yaml", ["potential.concurrent_terms=true"])).concurrent
    s = sampler_settings(cfg.sampling)
    assert (s.n_equilibration_steps, s.n_production_steps, s.stride_steps) == (100, 100, 10)
    (target,) = build_targets(cfg)
    r = target.observable.grid()
    assert bool(target.mask[(r >= 3.0) & (r <= 8.0)].all()) and not bool(target.mask[r < 3.0].any())


def test_bad_data_file_is_one_line_error(tmp_path, capsys):
    raw = tiny_config(tmp_path / "run")
    bad = tmp_path / "bad.csv"
    bad.write_text("r_angstrom,g\n1.0,0.5\n2.0,nan\n3.0,1.0\n")
    raw["targets"][0]["data"]["file"] = str(bad)
    cfg_path = write(tmp_path / "c.yaml", raw)
    with pytest.raises(SystemExit) as code:
        main(["refine", str(cfg_path), "--no-progress"])
    assert code.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.csv" in err


def test_cli_refine_resume_and_evaluate(tmp_path):
    cfg_path = write(tmp_path / "c.yaml", tiny_config(tmp_path / "run"))
    exe = [sys.executable, "-m", "exprefine.cli.main"]
    out = subprocess.run(exe + ["config", "validate", str(cfg_path)], capture_output=True, text=True)
    assert out.returncode == 0 and "valid" in out.stdout

    out = subprocess.run(exe + ["refine", str(cfg_path), "--no-progress"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "before and after refinement" in out.stdout and "RMSE before" in out.stdout
    assert "sigma_A[Ar-Ar]" in out.stdout and "epsilon_K[Ar-Ar]" in out.stdout  # the refined parameters
    # not a terminal: one plain line per update, no progress bars, no raw Python warnings
    lines = out.stderr.strip().splitlines()
    assert [line.split("  ")[0] for line in lines if line.startswith("update")] == ["update 0 [1/2]", "update 1 [2/2]"]
    assert "\r" not in out.stderr and "Warning:" not in out.stderr
    run = tmp_path / "run"
    assert (run / "config.yaml").exists() and (run / "final_model.pt").exists()
    assert len((run / "log.csv").read_text().strip().splitlines()) == 3
    # the model and checkpoint files record the config with paths relative to the run directory
    for file in (run / "final_model.pt", run / "checkpoints" / "latest.pt"):
        recorded = torch.load(file, weights_only=False)["config"]
        assert recorded["run_dir"] == "." and str(tmp_path) not in repr(recorded), file

    # a second refine into the same run directory must not overwrite it silently
    out = subprocess.run(exe + ["refine", str(cfg_path), "--no-progress"], capture_output=True, text=True)
    assert out.returncode == 2 and "--resume" in out.stderr

    # continue for two more updates
    out = subprocess.run(exe + ["refine", str(cfg_path), "--resume", "--no-progress", "--set", "refine.n_updates=4"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rows = (run / "log.csv").read_text().strip().splitlines()
    assert [int(r.split(",")[0]) for r in rows[1:]] == [0, 1, 2, 3]
    summary = json.loads((run / "summary.json").read_text())
    assert len(summary["wall_time_segments_s"]) == 2 and "in 2 sessions (resumed" in out.stdout
    assert sum(summary["wall_time_segments_s"]) == pytest.approx(summary["wall_time_s"])

    out = subprocess.run(exe + ["evaluate", str(cfg_path), "--checkpoint", str(run / "final_model.pt"),
                                "--no-progress"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    ev = json.loads((run / "evaluate" / "evaluation.json").read_text())
    assert ev["n_frames"] == 10 and ev["rmse"]["g_r"] > 0
    assert (run / "evaluate" / "target_g_r.png").exists()

    out = subprocess.run(exe + ["report", str(run)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    report = (run / "report" / "report.md").read_text()
    assert "## Refinement" in report and "## Evaluation of a checkpoint" in report
    assert (run / "report" / "refine_history.png").exists() and (run / "report" / "evaluate_target_g_r.png").exists()

    # start afresh with the Levenberg–Marquardt optimizer: the old log and checkpoints go,
    # the evaluation folder stays
    out = subprocess.run(exe + ["refine", str(cfg_path), "--overwrite", "--no-progress", "--set",
                                "refine.optimizer=gauss_newton", "--set", "refine.n_updates=1"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rows = (run / "log.csv").read_text().strip().splitlines()
    assert len(rows) == 2 and "damping" in rows[0]
    assert (run / "evaluate" / "evaluation.json").exists()


def test_per_parameter_step_sizes_reach_the_optimizer(tmp_path):
    raw = tiny_config(tmp_path / "run")
    raw["potential"]["terms"][0].update({"sigma_learning_rate": 0.004, "epsilon_learning_rate": 0.04})
    raw["potential"]["terms"].append({"kind": "pair_spline", "species": ["Ar"], "r_min_A": 3.0, "cutoff_A": 8.0,
                                      "n_knots": 8, "learning_rate": 0.0003})
    from exprefine.builders import build_refiner

    refiner = build_refiner(load_config(write(tmp_path / "c.yaml", raw)), progress=False)
    lj, spline = refiner.potential.terms
    lr_of = {id(p): g["lr"] for g in refiner.optimizer.param_groups for p in g["params"]}
    assert lr_of[id(lj.log_sigma)] == 0.004
    assert lr_of[id(lj.log_epsilon)] == 0.04
    assert all(lr_of[id(p)] == 0.0003 for p in spline.parameters())
    assert sum(len(g["params"]) for g in refiner.optimizer.param_groups) == 3
    raw["potential"]["terms"][1]["learning_rate_eV"] = raw["potential"]["terms"][1].pop("learning_rate")
    with pytest.raises(ConfigError, match=r"terms.1.pair_spline: 'learning_rate_eV' was renamed 'learning_rate'$"):
        load_config(write(tmp_path / "d.yaml", raw))


def test_every_energy_parameter_takes_eV_K_or_kJ_per_mol(tmp_path):
    from exprefine.builders import build_potential
    from exprefine.units import BOLTZMANN_eV_per_K, kJ_PER_MOL_IN_eV

    values = {}
    for key, value, factor in (("epsilon_eV", 0.01, 1.0), ("epsilon_K", 116.0, BOLTZMANN_eV_per_K),
                               ("epsilon_kJ_per_mol", 0.96, kJ_PER_MOL_IN_eV)):
        raw = tiny_config(tmp_path / "run")
        term = raw["potential"]["terms"][0]
        for k in ("epsilon_eV", "epsilon_K", "epsilon_kJ_per_mol"):
            term.pop(k, None)
        term[key] = value
        raw["potential"]["terms"].append({"kind": "repulsive_r12", "species": ["Ar"], "sigma_A": 3.0, key: value,
                                          "cutoff_A": 6.0})
        lj, prior = build_potential(load_config(write(tmp_path / f"{key}.yaml", raw))).terms
        values[key] = (float(lj.epsilon_eV[0].detach()), float(prior.epsilon_eV[0]))
        assert values[key][0] == pytest.approx(value * factor, rel=1e-12)
        assert values[key][1] == pytest.approx(value * factor, rel=1e-12)


def test_adam_betas_reach_the_optimizer_and_bad_ones_are_refused(tmp_path):
    from exprefine.builders import build_refiner

    path = write(tmp_path / "c.yaml", tiny_config(tmp_path / "run"))
    refiner = build_refiner(load_config(path, ["refine.adam_betas=[0.5, 0.999]"]), progress=False)
    assert all(g["betas"] == (0.5, 0.999) for g in refiner.optimizer.param_groups)
    with pytest.raises(ConfigError, match="adam_beta"):
        load_config(path, ["refine.adam_betas=[1.0, 0.999]"])
    with pytest.raises(ConfigError, match="refine: 'adam_beta1' was renamed 'adam_betas'"):
        load_config(path, ["refine.adam_beta1=0.5"])
    with pytest.raises(ValueError, match="adam_betas"):
        RefinerSettings(adam_betas=(0.9, 1.0))


def test_scattering_density_and_npt_configs(tmp_path):
    """S(Q), ADF, density and NPT settings travel from YAML to objects; units that contradict are refused."""
    raw = tiny_config(tmp_path / "run")
    raw["sampling"].update({"pressure_bar": 1.0, "barostat_coupling": "semi_isotropic", "barostat_time_fs": 500.0})
    raw["targets"] = [
        {"name": "S_q", "observable": {"kind": "structure_factor", "direct": True, "q_min_inv_A": 1.0,
                                       "q_max_inv_A": 6.0, "q_step_inv_A": 0.5},
         "data": {"file": str(ARGON_DATA.with_name("S_q.csv")), "x_column": "q_inv_angstrom", "y_column": "S",
                  "x_unit": "inverse_angstrom"},
         "fit_range_inv_A": [1.5, 5.0]},
        {"name": "rho", "observable": {"kind": "density"}, "value_g_per_cm3": 1.41, "sigma_g_per_cm3": 0.01},
    ]
    cfg = load_config(write(tmp_path / "c.yaml", raw))
    settings = sampler_settings(cfg.sampling)
    assert settings.barostat is not None and settings.barostat.coupling == "semi_isotropic"
    assert settings.barostat.pressure_bar == 1.0 and settings.barostat.time_fs == 500.0
    s_q, rho = build_targets(cfg)
    q = s_q.observable.grid()
    assert len(q) == 11 and float(q[0]) == pytest.approx(1.0) and float(q[-1]) == pytest.approx(6.0)
    assert bool(s_q.mask[(q >= 1.5) & (q <= 5.0)].all()) and not bool(s_q.mask[q < 1.5].any())
    assert float(rho.reference) == 1.41 and float(rho.sigma) == 0.01
    # a fit range or x unit of the wrong kind is named
    bad = json.loads(json.dumps(raw))
    bad["targets"][0]["fit_range_A"] = bad["targets"][0].pop("fit_range_inv_A")
    with pytest.raises(ConfigError, match="fit_range_inv_A"):
        load_config(write(tmp_path / "b.yaml", bad))
    bad = json.loads(json.dumps(raw))
    bad["targets"][0]["data"]["x_unit"] = "angstrom"
    with pytest.raises(ConfigError, match="x_unit"):
        load_config(write(tmp_path / "b.yaml", bad))
    bad = json.loads(json.dumps(raw))
    bad["targets"][1]["value_bar"] = 1.0
    with pytest.raises(ConfigError, match="value_g_per_cm3"):
        load_config(write(tmp_path / "b.yaml", bad))
    bad = json.loads(json.dumps(raw))
    bad["sampling"]["integrator"] = "velocity_verlet"
    with pytest.raises(ConfigError, match="thermostat"):
        load_config(write(tmp_path / "b.yaml", bad))


def test_evaluate_existing_frames(argon_108_trajectory, tmp_path, capsys):
    """`exprefine evaluate --frames` computes the targets on frames from elsewhere (no MD)."""
    from ase.io import write as ase_write

    _, result = argon_108_trajectory
    ase_write(tmp_path / "frames.extxyz", result.trajectory.to_atoms())
    raw = tiny_config(tmp_path / "run")
    raw["targets"].append({"name": "pressure", "observable": {"kind": "pressure"}, "value_bar": 1.0})
    cfg_path = write(tmp_path / "c.yaml", raw)
    with pytest.raises(SystemExit) as code:
        main(["evaluate", str(cfg_path), "--frames", str(tmp_path / "frames.extxyz"), "--every", "2"])
    assert code.value.code == 0
    ev = json.loads((tmp_path / "run" / "evaluate_frames" / "evaluation.json").read_text())
    assert ev["n_frames"] == result.trajectory.n_frames // 2
    # textbook LJ at 85 K against the measured g(r) over 3–8 Å: the known ≈ 0.03 level, not 0 and not 1
    assert 0.01 < ev["rmse"]["g_r"] < 0.1
    # a scalar target is reported with its value and block standard error; the value is the plain
    # mean of the per-frame pressures of the frames used
    from exprefine.io import read_frames
    from exprefine.observables import Pressure

    pressure = ev["scalar_targets"]["pressure"]
    assert set(ev["scalar_targets"]) == {"pressure"}
    assert pressure["standard_error"] > 0 and abs(pressure["value"] - 1.0) == pytest.approx(ev["rmse"]["pressure"])
    used = read_frames(tmp_path / "frames.extxyz", slice(None, None, 2), temperature_K=85.0)
    direct = Pressure(temperature_K=85.0).evaluate(used, build_potential(load_config(cfg_path))).mean()
    assert pressure["value"] == pytest.approx(float(direct), rel=1e-9)
    out = capsys.readouterr().out
    assert "frames of" in out and "±" in out
    with pytest.raises(SystemExit) as code:
        main(["evaluate", str(cfg_path), "--no-progress"])
    assert code.value.code == 2 and "--checkpoint" in capsys.readouterr().err


def test_evaluate_frames_reweighted_to_other_parameters(argon_108_trajectory, tmp_path, capsys):
    """`evaluate --frames F --checkpoint B --sampled-with A`: the averages of frames sampled at A's parameters,
    reweighted to B's, agree with a new sampling at B within their standard errors; with A = B nothing moves."""
    from ase.io import write as ase_write

    from exprefine.blocking import mean_and_standard_error
    from exprefine.io import read_frames
    from exprefine.io.checkpoint import save_checkpoint
    from exprefine.observables import Pressure
    from exprefine.sampling import SamplerSettings, sample
    from exprefine.units import kT_eV

    raw = tiny_config(tmp_path / "run")
    raw["targets"].append({"name": "pressure", "observable": {"kind": "pressure"}, "value_bar": 1.0})
    cfg_path = write(tmp_path / "c.yaml", raw)
    cfg = load_config(cfg_path)
    sampled, moved = build_potential(cfg), build_potential(cfg)
    with torch.no_grad():  # ε 8 % deeper
        next(p for n, p in moved.named_parameters() if n.endswith("log_epsilon")).add_(math.log(1.08))
    save_checkpoint(tmp_path / "moved.pt", {"potential_state": moved.state_dict()})
    start = argon_108_trajectory[1].final.state.clone()
    start.velocities = None

    def run(potential, seed):
        md = SamplerSettings(temperature_K=85.0, timestep_fs=10.0, friction_per_ps=5.0, n_equilibration_steps=200,
                             n_production_steps=1000, stride_steps=5, seed=seed)
        return sample(potential, start, md).trajectory

    trajectory = run(sampled, 21)
    ase_write(tmp_path / "frames.extxyz", trajectory.to_atoms())
    trajectory.save(tmp_path / "frames.pt")
    frames = ["evaluate", str(cfg_path), "--frames", str(tmp_path / "frames.extxyz")]

    def evaluation(*extra):
        with pytest.raises(SystemExit) as code:
            main([*frames, *extra])
        assert code.value.code == 0
        return json.loads((tmp_path / "run" / "evaluate_frames" / "evaluation.json").read_text())

    plain = evaluation("--checkpoint", str(tmp_path / "moved.pt"))
    same = evaluation("--checkpoint", str(tmp_path / "moved.pt"), "--sampled-with", str(tmp_path / "moved.pt"))
    assert plain["ess_fraction"] is None and same["ess_fraction"] == pytest.approx(1.0, abs=1e-12)
    assert same["rmse"] == pytest.approx(plain["rmse"], rel=1e-12)
    reweighted = evaluation("--checkpoint", str(tmp_path / "moved.pt"), "--sampled-with", "config")
    assert reweighted["sampled_with"] == "config" and 0.2 < reweighted["ess_fraction"] < 1.0 - 1e-6
    assert "reweighted from config: N_eff/N = " in capsys.readouterr().out
    frames[-1] = str(tmp_path / "frames.pt")  # the same frames as exprefine's own trajectory file (full precision,
    from_pt = evaluation("--checkpoint", str(tmp_path / "moved.pt"), "--sampled-with", "config")  # extxyz's text not)
    assert from_pt["ess_fraction"] == pytest.approx(reweighted["ess_fraction"], rel=1e-6)
    assert from_pt["scalar_targets"]["pressure"]["value"] == pytest.approx(
        reweighted["scalar_targets"]["pressure"]["value"], rel=1e-6)
    from exprefine.report import write_report

    report = write_report(tmp_path / "run" / "evaluate_frames").read_text()
    assert f"sampled with `config`; N_eff/N = {reweighted['ess_fraction']:.3f}" in report
    # the weights are Boltzmann factors of the energy differences, computed here frame by frame
    used = read_frames(tmp_path / "frames.extxyz", temperature_K=85.0)
    with torch.no_grad():
        energy = {name: p.energy(used.as_state()).double() for name, p in (("sampled", sampled), ("moved", moved))}
    w = torch.softmax(-(energy["moved"] - energy["sampled"]) / kT_eV(85.0), dim=0)
    per_frame = Pressure(temperature_K=85.0).evaluate(used, moved).double().reshape(-1)
    p_rw = reweighted["scalar_targets"]["pressure"]
    assert p_rw["value"] == pytest.approx(float((w * per_frame).sum()), rel=1e-9)
    assert reweighted["ess_fraction"] == pytest.approx(float(torch.exp(-(w * w.log()).sum())) / used.n_frames)
    assert p_rw["standard_error"] > plain["scalar_targets"]["pressure"]["standard_error"]  # √(N/N_eff) wider
    # DiffTRe's premise: the reweighted average is what sampling at the moved parameters gives
    direct = Pressure(temperature_K=85.0).evaluate(run(moved, 22), moved).double().reshape(-1)
    direct_mean, direct_se = mean_and_standard_error(direct)
    # (measured: plain 2,343 ± 37 bar, reweighted 2,215 ± 44 at N_eff/N 0.70, new sampling 2,146 ± 31: the
    # plain average would miss by 3.6 combined errors, the reweighted one is within 1.3)
    assert abs(p_rw["value"] - direct_mean) < 3.0 * (p_rw["standard_error"] ** 2 + direct_se ** 2) ** 0.5
    with pytest.raises(SystemExit) as code:
        main(["evaluate", str(cfg_path), "--checkpoint", str(tmp_path / "moved.pt"), "--sampled-with", "config"])
    assert code.value.code == 2 and "--sampled-with goes with --frames" in capsys.readouterr().err


def test_single_number_targets(tmp_path):
    """A peak position (in its curve's unit) and an interlayer spacing are scalar targets."""
    raw = tiny_config(tmp_path / "run")
    raw["targets"] = [
        {"name": "peak", "observable": {"kind": "peak_position", "window": [3.2, 4.4],
                                        "of": {"kind": "rdf", "r_max_A": 8.0, "bin_width_A": 0.05}},
         "value_A": 3.68, "sigma_A": 0.02},
        {"name": "d", "observable": {"kind": "interlayer_spacing", "n_layers": 2}, "value_A": 3.22},
    ]
    peak, spacing = build_targets(load_config(write(tmp_path / "c.yaml", raw)))
    assert peak.observable.window == (3.2, 4.4) and float(peak.reference) == 3.68 and float(peak.sigma) == 0.02
    assert spacing.observable.n_layers == 2 and spacing.sigma is None
    raw["targets"][0]["value_inv_A"] = raw["targets"][0].pop("value_A")
    with pytest.raises(ConfigError, match="value_A"):
        load_config(write(tmp_path / "b.yaml", raw))


def test_data_metadata_is_checked_against_the_system(tmp_path):
    """A stated composition or number density that the simulated cell contradicts is named in one line."""
    from exprefine.builders import build_refiner

    raw = tiny_config(tmp_path / "run")
    raw["targets"][0]["data"].update({"composition": {"Ar": 1}, "number_density_per_A3": 0.02125})
    build_refiner(load_config(write(tmp_path / "ok.yaml", raw)), progress=False)  # consistent: no error
    raw["targets"][0]["data"]["composition"] = {"Ar": 1, "Kr": 1}
    with pytest.raises(ValueError, match="composition Ar 0.500, Kr 0.500 but the system has Ar 1.000"):
        build_refiner(load_config(write(tmp_path / "c.yaml", raw)), progress=False)
    raw["targets"][0]["data"]["composition"] = {"Ar": 1}
    raw["targets"][0]["data"]["number_density_per_A3"] = 0.025
    with pytest.raises(ValueError, match="0.025 Å⁻³"):
        build_refiner(load_config(write(tmp_path / "d.yaml", raw)), progress=False)


def test_resolved_config_records_paths_relative_to_itself_and_loads_back(tmp_path):
    from exprefine.config import config_to_plain, save_resolved

    raw = tiny_config(tmp_path / "run")
    cfg = load_config(write(tmp_path / "c.yaml", raw))
    save_resolved(cfg, tmp_path / "run" / "config.yaml")
    text = (tmp_path / "run" / "config.yaml").read_text()
    assert str(tmp_path) not in text and "run_dir: ." in text
    again = load_config(tmp_path / "run" / "config.yaml")
    assert config_to_plain(again) == config_to_plain(cfg)
    # a resolved config of an earlier version lists every unit key, the unused ones as null
    old = yaml.safe_load(text)
    old["targets"][0].update({"fit_range_inv_A": None, "value_bar": None, "sigma_A": None})
    assert config_to_plain(load_config(write(tmp_path / "run" / "old.yaml", old))) == config_to_plain(cfg)


def test_the_parameter_table_keeps_a_large_change_apart_from_the_value():
    from exprefine.cli.console import parameters_table

    table = parameters_table({"s6": 0.950004, "s8": 0.0103167}, {"s6": 0.97957, "s8": -0.334077})
    row = table.splitlines()[2]
    assert row.split() == ["s8", "0.0103167", "-0.334077", "-3338.22", "%"]


def test_refine_segment_ps_flag_runs_the_md_in_segments_and_is_recorded(tmp_path, capsys):
    cfg_path = write(tmp_path / "c.yaml", tiny_config(tmp_path / "run", n_updates=1, final_check=False))
    with pytest.raises(SystemExit) as code:
        main(["refine", str(cfg_path), "--no-progress", "--segment-ps", "0.5"])
    assert code.value.code == 0
    err = capsys.readouterr().err
    # 1 ps of equilibration + 1 ps of production in segments of 0.5 ps
    assert "MD of state point system: segment 2/2: t = 2.00 ps" in err
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["refine"]["segment_ps"] == 0.5
