"""Tests of the sampler: reproducibility, trajectory layout, blow-up detection, validation."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from ase.build import bulk

from exprefine.potentials import LennardJones
from exprefine.sampling import (
    MDState,
    SamplerSettings,
    SimulationBlowUp,
    check_blow_up,
    initialize,
    sample,
)
from exprefine.state import State, concatenate, from_atoms, replicate
from exprefine.trajectory import parameter_fingerprint
from exprefine.units import BOLTZMANN_eV_per_K

torch.set_num_threads(1)


def argon(repeat: int = 2) -> State:
    return from_atoms(bulk("Ar", "fcc", a=5.26, cubic=True).repeat(repeat))


def lj_argon() -> LennardJones:
    return LennardJones(["Ar"], 3.405, 0.0103, cutoff_A=8.0)


def settings(**overrides) -> SamplerSettings:
    base = dict(
        temperature_K=80.0,
        timestep_fs=10.0,
        friction_per_ps=10.0,
        n_equilibration_steps=10,
        n_production_steps=20,
        stride_steps=5,
    )
    base.update(overrides)
    return SamplerSettings(**base)


# ---------------------------------------------------------------------- reproducibility
def test_same_seed_identical_different_seed_differs():
    lj = lj_argon()
    start = replicate(argon(2), 2)
    print("seeds 3, 3, 4")
    a = sample(lj, start, settings(seed=3))
    b = sample(lj, start, settings(seed=3))
    c = sample(lj, start, settings(seed=4))
    assert torch.equal(a.trajectory.positions_A, b.trajectory.positions_A)
    assert torch.equal(a.trajectory.energies_eV, b.trajectory.energies_eV)
    assert torch.equal(a.final.state.velocities, b.final.state.velocities)
    assert not torch.equal(a.trajectory.positions_A, c.trajectory.positions_A)
    # replicas start identically but receive different noise
    assert not torch.equal(a.trajectory.positions_A[0], a.trajectory.positions_A[1])


def test_passed_generator_continues_the_random_stream():
    """Two runs of 20 steps sharing a generator equal one run of 40 steps."""
    lj = lj_argon()
    seed = 9
    print("seed", seed)
    md0 = initialize(argon(2), lj, 80.0, torch.Generator().manual_seed(seed))
    one = sample(lj, md0, settings(n_equilibration_steps=0, n_production_steps=40, stride_steps=10),
                 generator=torch.Generator().manual_seed(seed + 1))
    g = torch.Generator().manual_seed(seed + 1)
    first = sample(lj, md0, settings(n_equilibration_steps=0, n_production_steps=20, stride_steps=10), generator=g)
    second = sample(lj, first.final, settings(n_equilibration_steps=0, n_production_steps=20, stride_steps=10), generator=g)
    assert second.final.step == 40
    assert torch.equal(one.trajectory.positions_A[2:], second.trajectory.positions_A)
    assert torch.equal(one.trajectory.time_fs[2:], second.trajectory.time_fs)


# ---------------------------------------------------------------------- trajectory layout
@pytest.mark.parametrize("integrator", ["baoab", "nose_hoover_chain", "velocity_verlet"])
def test_trajectory_layout_and_reference_energies(integrator):
    lj = lj_argon()
    n_rep = 3
    s = settings(integrator=integrator, n_equilibration_steps=4, n_production_steps=12, stride_steps=4, seed=1)
    result = sample(lj, replicate(argon(2), n_rep), s)
    traj = result.trajectory
    n_saved = 3
    assert result.n_steps == 16 and result.final.step == 16
    assert traj.n_frames == n_rep * n_saved and traj.n_atoms == 32
    assert traj.replica.tolist() == [0, 1, 2] * n_saved
    assert traj.time_fs.tolist() == [t for t in (80.0, 120.0, 160.0) for _ in range(n_rep)]
    assert traj.energies_eV.dtype == torch.float64
    recomputed = lj.compute(traj.as_state(), forces=False).energy_eV
    torch.testing.assert_close(traj.energies_eV, recomputed.to(torch.float64), rtol=0, atol=1e-10)
    # the last saved step is the final state, time-major over replicas
    torch.testing.assert_close(traj.positions_A[-n_rep:].reshape(-1, 3), result.final.state.positions, rtol=0, atol=0)
    assert traj.kT_eV == pytest.approx(BOLTZMANN_eV_per_K * 80.0, rel=1e-12)
    assert traj.fingerprint == parameter_fingerprint(lj)
    assert torch.equal(traj.atomic_numbers, torch.full((32,), 18))
    assert result.wall_time_s > 0
    if integrator == "nose_hoover_chain":
        assert result.final.thermostat is not None


def test_custom_fingerprint_and_progress_bar(capsys):
    lj = lj_argon()
    result = sample(lj, argon(2), settings(n_equilibration_steps=0, n_production_steps=10), fingerprint="abc",
                    progress=True)
    assert result.trajectory.fingerprint == "abc"
    err = capsys.readouterr().err
    assert "step" in err and "T_K" in err


# ---------------------------------------------------------------------- blow-ups
@pytest.mark.parametrize("integrator", ["baoab", "velocity_verlet"])
def test_absurd_timestep_raises_blow_up(integrator):
    lj = lj_argon()
    with pytest.raises(SimulationBlowUp, match="step") as info:
        sample(lj, argon(2), settings(integrator=integrator, timestep_fs=200.0, n_production_steps=200))
    message = str(info.value)
    print(message)
    assert "\n" not in message
    assert any(word in message for word in ("non-finite", "temperature", "closer than"))


def test_blow_up_messages_name_the_problem():
    st = argon(2)
    st = replace(st, velocities=torch.zeros_like(st.positions))
    zeros = torch.zeros_like(st.positions)
    md = MDState(st, zeros, torch.zeros(1, dtype=torch.float64), step=7)
    check_blow_up(md, target_temperature_K=10.0, min_distance_A=0.5)  # healthy: no error

    close = st.positions.clone()
    close[5] = close[2] + torch.tensor([0.3, 0.0, 0.0], dtype=torch.float64)
    with pytest.raises(SimulationBlowUp, match=r"atoms 2,5 of system 0 closer than 0.5 Å \(0.300 Å\) at step 7"):
        check_blow_up(replace(md, state=replace(st, positions=close)), min_distance_A=0.5)

    hot = replace(st, velocities=torch.full_like(st.positions, 0.1))
    with pytest.raises(SimulationBlowUp, match=r"temperature .* K of system 0 far above target 10 K at step 7"):
        check_blow_up(replace(md, state=hot), target_temperature_K=10.0)

    with pytest.raises(SimulationBlowUp, match="non-finite energy at step 7"):
        check_blow_up(replace(md, energy_eV=torch.tensor([float("nan")], dtype=torch.float64)))


# ---------------------------------------------------------------------- validation
def test_replicas_must_match():
    lj = LennardJones(["Ar", "Ne"], 3.405, 0.0103, cutoff_A=8.0)
    ar = argon(2)
    ne = replace(ar, atomic_numbers=ar.atomic_numbers.clone())
    ne.atomic_numbers[3] = 10
    with pytest.raises(ValueError, match="system 1 differs"):
        sample(lj, concatenate([ar, ne]), settings())
    with pytest.raises(ValueError, match="same number of atoms"):
        sample(lj, concatenate([ar, argon(1)]), settings())


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"integrator": "leapfrog"}, "unknown integrator 'leapfrog'"),
        ({"timestep_fs": -1.0}, "timestep_fs must be positive"),
        ({"temperature_K": 0.0}, "temperature_K must be positive"),
        ({"stride_steps": 0}, "stride_steps"),
        ({"n_production_steps": 3, "stride_steps": 5}, "no frame is stored"),
        ({"max_temperature_factor": 0.5}, "max_temperature_factor"),
    ],
)
def test_settings_validation(overrides, match):
    with pytest.raises(ValueError, match=match):
        settings(**overrides)


def test_sample_or_load_reuses_a_run_and_refuses_one_made_otherwise(tmp_path):
    from conftest import argon_lattice, argon_lj
    from exprefine.sampling import sample_or_load, settings_from_times

    settings = settings_from_times(temperature_K=85.0, timestep_fs=10.0, equilibration_ps=0.2, production_ps=0.25,
                                   frame_interval_fs=100.0, seed=3)
    assert (settings.n_equilibration_steps, settings.n_production_steps, settings.stride_steps) == (20, 30, 10)
    npt = settings_from_times(temperature_K=85.0, timestep_fs=10.0, equilibration_ps=0.2, production_ps=0.25,
                              frame_interval_fs=100.0, pressure_bar=1.0, barostat_coupling="uniaxial_z")
    assert npt.barostat is not None and npt.barostat.coupling == "uniaxial_z"
    state = from_atoms(argon_lattice(2))
    path = tmp_path / "md" / "run.pt"
    first = sample_or_load(argon_lj(), state, settings, path)
    again = sample_or_load(argon_lj(), state, settings, path)
    assert not first.reused and again.reused
    assert torch.equal(first.trajectory.positions_A, again.trajectory.positions_A)
    assert again.steps_per_s == pytest.approx(first.steps_per_s)
    other = settings_from_times(temperature_K=90.0, timestep_fs=10.0, equilibration_ps=0.2, production_ps=0.25,
                                frame_interval_fs=100.0, seed=3)
    with pytest.raises(ValueError, match="run.pt: made with another settings"):
        sample_or_load(argon_lj(), state, other, path)
    with pytest.raises(ValueError, match="potential fingerprint"):
        sample_or_load(argon_lj(sigma_A=3.3), state, settings, path)


def test_a_cached_run_is_adopted_only_by_a_potential_that_reproduces_its_energies(tmp_path):
    from conftest import argon_lattice, argon_lj
    from exprefine.potentials import SumPotential
    from exprefine.sampling import adopt_cached_run, sample_or_load, settings_from_times

    settings = settings_from_times(temperature_K=85.0, timestep_fs=10.0, equilibration_ps=0.1, production_ps=0.1,
                                   frame_interval_fs=50.0, seed=1)
    state, path = from_atoms(argon_lattice(2)), tmp_path / "run.pt"
    first = sample_or_load(argon_lj(), state, settings, path)
    wrapped = SumPotential([argon_lj()])  # the same physics under another state-dict layout
    with pytest.raises(ValueError, match="adopt_cached_run"):
        sample_or_load(wrapped, state, settings, path)
    with pytest.raises(ValueError, match="run.pt: frame 0 has energy"):
        adopt_cached_run(argon_lj(sigma_A=3.3), path)
    assert adopt_cached_run(wrapped, path) == parameter_fingerprint(wrapped)
    again = sample_or_load(wrapped, state, settings, path)
    assert again.reused and torch.equal(again.trajectory.positions_A, first.trajectory.positions_A)
