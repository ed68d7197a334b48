"""The refinement loop: it lowers the loss, resumes exactly, and rolls back a blown-up sampling."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from conftest import argon_lj
from exprefine.io.checkpoint import load_checkpoint
from exprefine.observables import RadialDistribution
from exprefine.refine import Refiner, RefinerSettings, Target
from exprefine.sampling import SamplerSettings


def _target(argon_108_trajectory) -> Target:
    """g(r) of true LJ argon (108 atoms, 85 K) as a synthetic measurement."""
    _, result = argon_108_trajectory
    rdf = RadialDistribution(r_max_A=8.0, r_min_A=2.5, bin_width_A=0.1, species=("Ar", "Ar"))
    reference = rdf.evaluate(result.trajectory).mean(0).to(torch.float64)
    mask = rdf.grid() >= 3.0
    return Target(name="g_r", observable=rdf, reference=reference, mask=mask)


def _sampler(seed: int = 5) -> SamplerSettings:
    return SamplerSettings(temperature_K=85.0, timestep_fs=10.0, friction_per_ps=2.0,
                           n_equilibration_steps=100, n_production_steps=200, stride_steps=10, seed=seed)


def _refiner(argon_108_trajectory, run_dir, n_updates, sigma_A=3.6, lr=0.03, **kw) -> Refiner:
    _, result = argon_108_trajectory
    start = result.final.state.clone()
    start.velocities = None
    settings = RefinerSettings(n_updates=n_updates, learning_rate=lr, resample_equilibration_steps=50,
                               chunk_size=10, progress=False, **kw)
    return Refiner(argon_lj(sigma_A=sigma_A, epsilon_K=100.0), [_target(argon_108_trajectory)], _sampler(),
                   start, settings, run_dir=run_dir)


def test_refinement_moves_sigma_toward_truth_and_lowers_loss(argon_108_trajectory, tmp_path):
    refiner = _refiner(argon_108_trajectory, tmp_path / "run", n_updates=6, final_check=True)
    result = refiner.run()
    sigmas = [r.parameters["sigma_A[Ar-Ar]"] for r in result.history]
    assert sigmas[0] == pytest.approx(3.6)
    # σ starts 5.7 % too large: six Adam steps of ≈3 % in ln σ must bring it down
    final_sigma = float(refiner.potential.sigma_A[0].detach())
    assert final_sigma < 3.55
    assert result.after is not None
    assert result.after.loss < 0.5 * result.before.loss, (result.before.loss, result.after.loss)
    # run directory contents
    run = tmp_path / "run"
    for name in ("log.csv", "log.jsonl", "history.png", "target_g_r.png", "summary.json", "final_model.pt",
                 "checkpoints/latest.pt"):
        assert (run / name).exists(), name
    rows = (run / "log.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 6
    summary = json.loads((run / "summary.json").read_text())
    assert summary["rmse_after"]["g_r"] < summary["rmse_before"]["g_r"]
    ck = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert ck["next_update"] == 6 and "versions" in ck and "torch" in ck["versions"]


def test_resume_reproduces_an_uninterrupted_run(argon_108_trajectory, tmp_path):
    """Stop after 2 updates, resume to 4: the parameters equal those of one run of 4 updates."""
    full = _refiner(argon_108_trajectory, tmp_path / "full", n_updates=4, final_check=False)
    full.run()
    first = _refiner(argon_108_trajectory, tmp_path / "split", n_updates=2, final_check=False)
    first.run()
    second = _refiner(argon_108_trajectory, tmp_path / "split", n_updates=4, final_check=False)
    result = second.run(resume=True)
    assert [r.update for r in result.history] == [0, 1, 2, 3]
    assert len(result.wall_time_segments_s) == 2 and sum(result.wall_time_segments_s) == pytest.approx(result.wall_time_s)
    for a, b in zip(full.potential.parameters(), second.potential.parameters()):
        assert torch.allclose(a, b, rtol=1e-12, atol=0), (a, b)
    assert len((tmp_path / "split" / "log.csv").read_text().strip().splitlines()) == 1 + 4


def test_blown_up_sampling_rolls_back_and_halves_the_step(argon_108_trajectory, tmp_path):
    """A huge first step makes σ explode (atoms overlap violently); the refiner must recover."""
    refiner = _refiner(argon_108_trajectory, None, n_updates=2, sigma_A=3.0, lr=2.0, final_check=False,
                       max_rollbacks=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = refiner.run()
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert any("rolled back" in m for m in messages), messages
    assert sum(r.rollbacks for r in result.history) >= 1  # recorded, for the history plot and the report
    lrs = [r.learning_rate for r in result.history]
    assert lrs[-1] < 2.0
    assert all(torch.isfinite(p).all() for p in refiner.potential.parameters())


def test_final_check_that_blows_up_falls_back_to_the_last_good_parameters(argon_108_trajectory, tmp_path):
    """One huge step (σ → e²·σ) is never tested before the final check; that check blows up, so the
    refiner keeps the parameters of the last good trajectory, checks those, and says so."""
    refiner = _refiner(argon_108_trajectory, tmp_path / "run", n_updates=1, sigma_A=3.0, lr=2.0, final_check=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = refiner.run()
    assert result.final_check_note is not None and "failed" in result.final_check_note
    assert any("were kept" in str(w.message) for w in caught)
    assert float(refiner.potential.sigma_A[0].detach()) == pytest.approx(3.0, rel=1e-12)
    # the first trajectory and the fallback check (a blown-up one is not counted)
    assert result.after is not None and result.n_samplings == 2
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["final_check_note"] == result.final_check_note


def test_settings_are_validated():
    with pytest.raises(ValueError, match="ess_threshold"):
        RefinerSettings(ess_threshold=1.5)
    with pytest.raises(ValueError, match="learning_rate"):
        RefinerSettings(learning_rate=0.0)


def test_final_check_at_the_accepted_parameters_is_not_run_twice(argon_108_trajectory, tmp_path, monkeypatch):
    """Gauss–Newton after a rejected last step: θ is the accepted point, so a final check whose loss
    is above that point's (fresh-trajectory noise) is kept, not repeated; a different accepted point
    is checked anew."""
    def run(same: bool, run_dir):
        refiner = _refiner(argon_108_trajectory, run_dir, n_updates=1, final_check=True, optimizer="gauss_newton")
        other = {k: v.clone() + 0.01 for k, v in refiner.potential.state_dict().items()}

        def accepted(final_loss):  # an accepted point with a lower loss than any check can give
            return (refiner.potential.state_dict() if same else other), -1.0

        monkeypatch.setattr(refiner.rule, "better_accepted_state", accepted)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = refiner.run()
        return result, [str(w.message) for w in caught]

    kept, messages = run(True, tmp_path / "same")
    assert kept.n_samplings == 2 and not any("keeping the last accepted" in m for m in messages)
    moved, messages = run(False, tmp_path / "other")
    assert moved.n_samplings == 3 and any("keeping the last accepted" in m for m in messages)


def test_plain_progress_lines_report_every_md_run_and_update(argon_108_trajectory, tmp_path, capsys):
    """Without bars (logs, nohup) a long sampling announces itself and its speed, and each update gets a line."""
    _refiner(argon_108_trajectory, tmp_path / "run", n_updates=1, final_check=False, progress_lines=True).run()
    err = capsys.readouterr().err.splitlines()
    md = [line for line in err if line.startswith("MD of state point system:")]
    assert md[0] == "MD of state point system: 300 steps (100 equilibration)"
    assert md[1].startswith("MD of state point system: 300 steps in ") and md[1].endswith("steps/s)")
    assert any(line.startswith("update 0 [1/1]") for line in err)
