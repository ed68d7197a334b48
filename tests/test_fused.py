"""Fused refinement (experiment + reference labels) and ``exprefine train`` from a config."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import SIGMA_TRUE_A, argon_lj
from exprefine.data import label_with_potential, split, write_extxyz
from exprefine.observables import RadialDistribution
from exprefine.refine import FusedDFT, Refiner, RefinerSettings, Target
from exprefine.sampling import SamplerSettings


def _labels(argon_108_trajectory):
    """The 40 fixture frames labelled by textbook LJ (the 'DFT' of this test)."""
    _, result = argon_108_trajectory
    return label_with_potential(argon_lj(), result.trajectory.as_state())


def _refine(argon_108_trajectory, dft: FusedDFT | None, n_updates: int = 4):
    """From textbook LJ, refine against a g(r) made with σ = 3.50 Å: experiment pulls σ up."""
    _, result = argon_108_trajectory
    rdf = RadialDistribution(r_max_A=8.0, r_min_A=2.5, bin_width_A=0.1, species=("Ar", "Ar"))
    shifted_r = rdf.grid().to(torch.float64) * (SIGMA_TRUE_A / 3.50)  # g_σ'(r) ≈ g_σ(r σ/σ')
    g = rdf.evaluate(result.trajectory).mean(0).to(torch.float64)
    reference = torch.from_numpy(__import__("numpy").interp(shifted_r.numpy(), rdf.grid().numpy(), g.numpy()))
    target = Target("g_r", rdf, reference, mask=rdf.grid() >= 3.0)
    start = result.final.state.clone()
    start.velocities = None
    sampler = SamplerSettings(temperature_K=85.0, timestep_fs=10.0, friction_per_ps=2.0, n_equilibration_steps=50,
                              n_production_steps=200, stride_steps=10, seed=3)
    settings = RefinerSettings(n_updates=n_updates, learning_rate=0.01, resample_equilibration_steps=50,
                               chunk_size=10, progress=False, final_check=False)
    refiner = Refiner(argon_lj(), [target], sampler, start, settings, run_dir=None, dft=dft)
    return refiner, refiner.run()


def test_fused_term_holds_the_potential_near_its_labels(argon_108_trajectory):
    """Without the DFT term σ drifts toward the 'experiment'; with it σ stays nearer the labels' σ."""
    parts = split(_labels(argon_108_trajectory), (0.75, 0.0, 0.25), seed=0)
    free, _ = _refine(argon_108_trajectory, None)
    fused, result = _refine(argon_108_trajectory, FusedDFT(train=parts.train, test=parts.test, weight=1e4,
                                                            batch_size=8))
    sigma_free = float(free.potential.sigma_A[0].detach())
    sigma_fused = float(fused.potential.sigma_A[0].detach())
    assert sigma_free > SIGMA_TRUE_A + 0.01  # four Adam steps of 1 % in ln σ
    assert abs(sigma_fused - SIGMA_TRUE_A) < 0.5 * abs(sigma_free - SIGMA_TRUE_A), (sigma_free, sigma_fused)
    # zero at the labels' own parameters, positive once σ moved
    assert result.history[0].dft_loss < 1e-20 and all(r.dft_loss > 0 for r in result.history[1:])
    # the test frames were labelled by the starting potential: zero error before, some after
    assert result.dft_before is not None and result.dft_before.force_rmse_meV_per_A < 1e-6
    assert result.dft_after is not None and result.dft_after.force_rmse_meV_per_A > 0


def test_gauss_newton_refuses_a_fused_term(argon_108_trajectory):
    parts = split(_labels(argon_108_trajectory), (0.75, 0.0, 0.25), seed=0)
    _, result = argon_108_trajectory
    with pytest.raises(ValueError, match="adam"):
        Refiner(argon_lj(), [Target("p", RadialDistribution(r_max_A=8.0), torch.ones(160))],
                SamplerSettings(temperature_K=85.0, timestep_fs=10.0, n_equilibration_steps=0, n_production_steps=10,
                                stride_steps=10),
                result.final.state, RefinerSettings(optimizer="gauss_newton"), dft=FusedDFT(parts.train, parts.test,
                                                                                           weight=1.0))


def test_cli_train_fits_lennard_jones_to_labels(argon_108_trajectory, tmp_path):
    """`exprefine train` recovers σ, ε from 20 % wrong starts and reports held-out errors."""
    write_extxyz(_labels(argon_108_trajectory), tmp_path / "labels.extxyz")
    cfg = {
        "run_dir": "run",
        "system": {"lattice": {"element": "Ar", "kind": "fcc", "number_density_per_A3": 0.02125, "repeat": [3, 3, 3]}},
        "potential": {"terms": [{"kind": "lennard_jones", "species": ["Ar"], "sigma_A": 3.2, "epsilon_K": 96.0,
                                 "cutoff_A": 8.0}]},
        "sampling": {"temperature_K": 85.0, "timestep_fs": 10.0, "equilibration_ps": 0.0, "production_ps": 0.1,
                     "frame_interval_fs": 100.0},
        "dft": {"file": "labels.extxyz", "split_fractions": [0.7, 0.15, 0.15], "batch_size": 4,
                "energy_weight": 10.0, "train": {"epochs": 40, "learning_rate": 0.02}},
        "threads": 1,
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    exe = [sys.executable, "-m", "exprefine.cli.main"]
    out = subprocess.run(exe + ["train", str(tmp_path / "c.yaml"), "--no-progress"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "test frames" in out.stdout
    run = tmp_path / "run"
    errors = json.loads((run / "dft_errors_test.json").read_text())
    assert errors["force_rmse_meV_per_A"] < 1.0 and errors["n_frames"] == 6
    split_file = json.loads((run / "dft_split.json").read_text())
    assert len(split_file["test"]) == 6
    from exprefine.builders import build_potential, load_potential_state
    from exprefine.config import load_config

    potential = build_potential(load_config(tmp_path / "c.yaml"))
    load_potential_state(potential, run / "final_model.pt")
    assert potential.summary()["sigma_A[Ar-Ar]"] == pytest.approx(SIGMA_TRUE_A, rel=2e-3)
    # a second train into the same directory must not overwrite it silently
    out = subprocess.run(exe + ["train", str(tmp_path / "c.yaml"), "--no-progress"], capture_output=True, text=True)
    assert out.returncode == 2 and "--resume" in out.stderr
