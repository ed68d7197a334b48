"""Resumable segmented MD: the joined segments equal one uninterrupted run, and a stopped run resumes."""

from __future__ import annotations

import json

import pytest
import torch

from exprefine.sampling import sample, sample_in_segments, sample_or_load, settings_from_times
from exprefine.sampling.segments import segment_plan
from exprefine.state import from_atoms

torch.set_num_threads(1)


def npt_settings(seed: int = 5):
    # 20 equilibration steps, 60 production steps, a frame every 10 steps; Langevin + c-rescale barostat
    return settings_from_times(temperature_K=85.0, timestep_fs=10.0, equilibration_ps=0.2, production_ps=0.6,
                               frame_interval_fs=100.0, seed=seed, pressure_bar=1.0, barostat_coupling="uniaxial_z")


def test_a_stopped_segmented_run_resumes_to_the_uninterrupted_trajectory(tmp_path):
    from conftest import argon_lattice, argon_lj

    settings, state = npt_settings(), from_atoms(argon_lattice(2))
    whole = sample(argon_lj(), state, settings)
    lines: list[str] = []
    first = sample_in_segments(argon_lj(), state, settings, tmp_path / "segs", segment_steps=20,
                               max_new_segments=2, log=lines.append)
    assert not first.complete and len(first.segments) == 2 and len(lines) == 2
    assert first.trajectory is not None and first.trajectory.n_frames == 4
    # a new process: only the files are left
    rest = sample_in_segments(argon_lj(), state, settings, tmp_path / "segs", segment_steps=20, log=lines.append)
    assert lines[2] == "resuming after segment 2/3 (t = 0.60 ps)" and lines[3].startswith("segment 3/3: t = 0.80 ps")
    assert rest.complete and [s.index for s in rest.segments] == [0, 1, 2]
    assert rest.n_steps == whole.n_steps == 80
    assert rest.trajectory is not None
    assert torch.equal(rest.trajectory.positions_A, whole.trajectory.positions_A)
    assert torch.equal(rest.trajectory.cells_A, whole.trajectory.cells_A)
    assert torch.equal(rest.trajectory.time_fs, whole.trajectory.time_fs)
    assert rest.segments[-1].end_time_ps == pytest.approx(0.8)
    assert torch.equal(rest.final.state.positions, whole.final.state.positions)


def test_a_segment_directory_of_another_run_is_refused(tmp_path):
    from conftest import argon_lattice, argon_lj

    state = from_atoms(argon_lattice(2))
    sample_in_segments(argon_lj(), state, npt_settings(), tmp_path, segment_steps=20, max_new_segments=1)
    with pytest.raises(ValueError, match="run.json: made with another settings"):
        sample_in_segments(argon_lj(), state, npt_settings(seed=6), tmp_path, segment_steps=20)
    with pytest.raises(ValueError, match="another segment steps"):
        sample_in_segments(argon_lj(), state, npt_settings(), tmp_path, segment_steps=30)
    with pytest.raises(ValueError, match="potential fingerprint"):
        sample_in_segments(argon_lj(sigma_A=3.3), state, npt_settings(), tmp_path, segment_steps=20)
    with pytest.raises(ValueError, match="start fingerprint"):
        sample_in_segments(argon_lj(), from_atoms(argon_lattice(2, density_per_A3=0.02)), npt_settings(), tmp_path,
                           segment_steps=20)


def test_segments_must_keep_the_frame_grid():
    with pytest.raises(ValueError, match="multiple of stride_steps"):
        segment_plan(npt_settings(), 15)
    plan = segment_plan(npt_settings(), 40)  # 60 production steps: 40 + 20
    assert [(p.n_equilibration_steps, p.n_production_steps) for p in plan] == [(20, 40), (0, 20)]


def test_sample_or_load_in_segments_caches_the_joined_run(tmp_path):
    from conftest import argon_lattice, argon_lj

    settings, state = npt_settings(), from_atoms(argon_lattice(2))
    path = tmp_path / "run.pt"
    made = sample_or_load(argon_lj(), state, settings, path, segment_steps=30)
    whole = sample(argon_lj(), state, settings)
    assert torch.equal(made.trajectory.positions_A, whole.trajectory.positions_A)
    assert (tmp_path / "run_segments" / "segment_001.pt").exists()
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["steps_per_s"] == pytest.approx(made.steps_per_s)
    assert sample_or_load(argon_lj(), state, settings, path).reused


def test_a_run_killed_between_its_files_resumes_after_its_last_finished_segment(tmp_path):
    from conftest import argon_lattice, argon_lj

    settings, state = npt_settings(), from_atoms(argon_lattice(2))
    whole = sample(argon_lj(), state, settings)
    sample_in_segments(argon_lj(), state, settings, tmp_path, segment_steps=20, max_new_segments=2)
    # killed after segment 2's MD state was written, before its readable record: run.json lags behind
    record = json.loads((tmp_path / "run.json").read_text())
    record["segments"] = record["segments"][:1]
    (tmp_path / "run.json").write_text(json.dumps(record))
    # and a segment cut short left a file the state does not know about
    (tmp_path / "segment_002.pt").write_bytes(b"half-written")
    rest = sample_in_segments(argon_lj(), state, settings, tmp_path, segment_steps=20)
    assert rest.complete and [s.index for s in rest.segments] == [0, 1, 2]
    assert rest.trajectory is not None
    assert torch.allclose(rest.trajectory.positions_A, whole.trajectory.positions_A, rtol=0.0, atol=1e-12)
    assert len(json.loads((tmp_path / "run.json").read_text())["segments"]) == 3
    (tmp_path / "md_state.pt").unlink()
    with pytest.raises(ValueError, match="md_state.pt is missing"):
        sample_in_segments(argon_lj(), state, settings, tmp_path, segment_steps=20)


def test_a_given_random_stream_is_continued_and_advanced_like_one_run(tmp_path):
    """A refinement chain's stream lives on across samplings: the segmented run starts from it, leaves it
    where one uninterrupted run leaves it, and refuses a work directory begun from another stream."""
    from conftest import argon_lattice, argon_lj

    settings, state = npt_settings(), from_atoms(argon_lattice(2))
    stream = torch.Generator().manual_seed(1234)
    torch.rand(7, generator=stream)  # a stream already used elsewhere
    whole_stream = torch.Generator()
    whole_stream.set_state(stream.get_state())
    whole = sample(argon_lj(), state, settings, generator=whole_stream)
    resumed_stream = torch.Generator()
    resumed_stream.set_state(stream.get_state())
    sample_in_segments(argon_lj(), state, settings, tmp_path, segment_steps=20, max_new_segments=1,
                       generator=stream)
    # a new process: the chain's stream as it was before the sampling began
    run = sample_in_segments(argon_lj(), state, settings, tmp_path, segment_steps=20, generator=resumed_stream)
    assert run.trajectory is not None and torch.equal(run.trajectory.positions_A, whole.trajectory.positions_A)
    assert torch.equal(resumed_stream.get_state(), whole_stream.get_state())
    other = torch.Generator().manual_seed(99)
    with pytest.raises(ValueError, match="generator fingerprint"):
        sample_in_segments(argon_lj(), state, settings, tmp_path, segment_steps=20, generator=other)
