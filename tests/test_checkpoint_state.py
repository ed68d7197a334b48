"""Checkpoints store a potential's trainable tensors and a fingerprint of its frozen rest."""

from __future__ import annotations

import pytest
import torch

from conftest import argon_lj
from exprefine.builders import load_potential_state
from exprefine.io.checkpoint import compact_state, full_state, load_checkpoint
from exprefine.potentials import SumPotential
from exprefine.potentials.selection import select_trainable
from exprefine.refine import Refiner, RefinerSettings
from test_refiner import _sampler, _target


def _sum_with_frozen_term() -> SumPotential:
    """LJ with σ trainable plus a second, frozen LJ term (the shape of a frozen base plus a correction)."""
    potential = SumPotential([argon_lj(sigma_A=3.5), argon_lj(sigma_A=3.0, epsilon_K=20.0)])
    select_trainable(potential, ["terms.0.log_sigma"])
    return potential


def test_compact_state_holds_only_the_trainable_tensors_and_rebuilds_the_full_one():
    potential = _sum_with_frozen_term()
    state = {k: v.clone() for k, v in potential.state_dict().items()}
    state["terms.0.log_sigma"] += 0.01  # a state the potential is not in now, as a saved "good state"
    stored = compact_state(potential, state)
    assert set(stored["trainable"]) == {"terms.0.log_sigma"}
    rebuilt = full_state(potential, stored, "test")
    assert set(rebuilt) == set(state)
    for name, value in state.items():
        assert torch.equal(rebuilt[name], value), name
    before = state["terms.0.log_sigma"].clone()
    stored["trainable"]["terms.0.log_sigma"] += 1.0  # a copy: the state it was made from is untouched
    assert torch.equal(state["terms.0.log_sigma"], before)


def test_a_changed_frozen_part_is_refused_and_a_full_state_passes_unchanged():
    potential = _sum_with_frozen_term()
    stored = compact_state(potential, potential.state_dict())
    with torch.no_grad():
        potential.terms[1].log_epsilon += 1e-9
    with pytest.raises(ValueError, match="run.pt: the frozen part of the model differs"):
        full_state(potential, stored, "run.pt")
    old = potential.state_dict()
    assert full_state(potential, old, "run.pt") is old
    stored["trainable"]["terms.5.log_sigma"] = torch.zeros(1)
    with pytest.raises(ValueError, match="no parameter 'terms.5.log_sigma'"):
        full_state(potential, stored, "run.pt")


def test_a_refinement_with_a_frozen_term_checkpoints_small_and_resumes_exactly(argon_108_trajectory, tmp_path):
    """2 updates, then resumed to 3 = 3 updates at once; the checkpoint holds σ of term 0 only."""
    _, result = argon_108_trajectory

    def refiner(run_dir, n_updates):
        start = result.final.state.clone()
        start.velocities = None
        settings = RefinerSettings(n_updates=n_updates, learning_rate=0.03, resample_equilibration_steps=50,
                                   chunk_size=10, progress=False, final_check=False)
        return Refiner(_sum_with_frozen_term(), [_target(argon_108_trajectory)], _sampler(), start, settings,
                       run_dir=run_dir)

    full = refiner(tmp_path / "full", 3)
    full.run()
    refiner(tmp_path / "split", 2).run()
    ck = load_checkpoint(tmp_path / "split" / "checkpoints" / "latest.pt")
    assert set(ck["potential_state"]["trainable"]) == {"terms.0.log_sigma"}
    assert set(ck["reference_potential_state"]["trainable"]) == {"terms.0.log_sigma"}
    resumed = refiner(tmp_path / "split", 3)
    resumed.run(resume=True)
    for (name, a), b in zip(full.potential.state_dict().items(), resumed.potential.state_dict().values()):
        assert torch.allclose(a, b, rtol=1e-12, atol=0), name
    assert float(full.potential.terms[0].log_sigma) != pytest.approx(float(torch.log(torch.tensor(3.5))), abs=1e-6)
    # `exprefine evaluate --checkpoint` and the LAMMPS route read such a checkpoint into a fresh potential
    latest = tmp_path / "split" / "checkpoints" / "latest.pt"
    fresh = _sum_with_frozen_term()
    load_potential_state(fresh, latest)
    stored = load_checkpoint(latest)["potential_state"]["trainable"]["terms.0.log_sigma"]
    assert torch.equal(fresh.terms[0].log_sigma.detach(), stored)
    other = SumPotential([argon_lj(sigma_A=3.5), argon_lj(sigma_A=3.1, epsilon_K=20.0)])
    select_trainable(other, ["terms.0.log_sigma"])
    with pytest.raises(ValueError, match="latest.pt: the frozen part of the model differs"):
        load_potential_state(other, latest)
