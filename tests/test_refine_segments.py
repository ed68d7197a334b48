"""A refinement's MD in resumable segments: the same refinement as in one piece, and a run stopped
inside a sampling resumes inside it."""

from __future__ import annotations

import pytest
import torch

import exprefine.sampling.segments as segments
from exprefine.sampling.sampler import sample as real_sample
from test_refiner import _refiner

torch.set_num_threads(1)

# the argon refinement of test_refiner: 100 equilibration + 200 production steps of 10 fs per sampling,
# so segments of 0.5 ps make 4 MD calls per sampling; ess_threshold 0.999 resamples at every update after the first
N_UPDATES = 3


def _run(argon_108_trajectory, run_dir, segment_ps, resume=False):
    refiner = _refiner(argon_108_trajectory, run_dir, n_updates=N_UPDATES, final_check=True, ess_threshold=0.999,
                       segment_ps=segment_ps)
    return refiner, refiner.run(resume=resume)


class _Stop(Exception):
    """Stands for the end of a session (a kill) at a chosen MD segment."""


def _counting_sample(calls: list[int], stop_at: int | None):
    def counted(*args, **kwargs):
        calls.append(1)
        if stop_at is not None and len(calls) == stop_at:
            raise _Stop
        return real_sample(*args, **kwargs)

    return counted


def test_segmented_md_gives_the_refinement_of_one_piece_md(argon_108_trajectory, tmp_path):
    plain, plain_result = _run(argon_108_trajectory, tmp_path / "plain", None)
    split, split_result = _run(argon_108_trajectory, tmp_path / "split", 0.5)
    assert plain_result.n_samplings == split_result.n_samplings == 1 + (N_UPDATES - 1) + 1
    assert [r.loss for r in split_result.history] == [r.loss for r in plain_result.history]
    for a, b in zip(plain.potential.parameters(), split.potential.parameters()):
        assert torch.equal(a, b)
    assert split_result.after is not None and plain_result.after is not None
    assert split_result.after.loss == plain_result.after.loss
    # finished segmented runs are deleted once the checkpoint (or the final check file) holds their frames
    assert not list((tmp_path / "split").rglob("segment_*.pt"))


def test_a_run_stopped_inside_a_resampling_resumes_inside_it(argon_108_trajectory, tmp_path, monkeypatch):
    plain, _ = _run(argon_108_trajectory, tmp_path / "plain", None)
    calls: list[int] = []
    # calls 1–4: the first trajectory; 5–8: the resampling of update 1, stopped in its second segment
    monkeypatch.setattr(segments, "sample", _counting_sample(calls, stop_at=6))
    with pytest.raises(_Stop):
        _run(argon_108_trajectory, tmp_path / "split", 0.5)
    assert len(list((tmp_path / "split").rglob("segment_*.pt"))) == 1  # the resampling's first segment
    calls.clear()
    monkeypatch.setattr(segments, "sample", _counting_sample(calls, stop_at=None))
    resumed, result = _run(argon_108_trajectory, tmp_path / "split", 0.5, resume=True)
    # three segments of update 1's resampling, four of update 2's, four of the final check
    assert len(calls) == 3 + 4 + 4
    assert [r.update for r in result.history] == list(range(N_UPDATES))
    for a, b in zip(plain.potential.parameters(), resumed.potential.parameters()):
        assert torch.allclose(a, b, rtol=1e-12, atol=0), (a, b)


def test_a_run_stopped_in_its_first_sampling_continues_it_when_started_again(argon_108_trajectory, tmp_path,
                                                                              monkeypatch):
    """Before the first checkpoint there is nothing to --resume; the same run started again finds the
    first sampling's segments (same parameters, start and stream) and continues it."""
    plain, _ = _run(argon_108_trajectory, tmp_path / "plain", None)
    calls: list[int] = []
    monkeypatch.setattr(segments, "sample", _counting_sample(calls, stop_at=3))
    with pytest.raises(_Stop):
        _run(argon_108_trajectory, tmp_path / "split", 0.5)
    calls.clear()
    monkeypatch.setattr(segments, "sample", _counting_sample(calls, stop_at=None))
    again, _ = _run(argon_108_trajectory, tmp_path / "split", 0.5)
    # the first sampling's last two segments, then two resamplings and the final check of four each
    assert len(calls) == 2 + 4 + 4 + 4
    for a, b in zip(plain.potential.parameters(), again.potential.parameters()):
        assert torch.allclose(a, b, rtol=1e-12, atol=0), (a, b)  # a resumed MD run agrees to round-off
