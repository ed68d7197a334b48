"""Replica groups: a state point's replicas as several MD chains with their own random streams.

The groups fix the frames (not the ranks), so a refinement gives the same trajectories on any number
of ranks; the 2-rank run is in test_distributed.py. Here: the bookkeeping, that a joined trajectory
is exactly its groups' own runs, resume, and one-line errors.
"""

from __future__ import annotations

import copy

import pytest
import torch

from exprefine.builders import build_potential, build_state_points
from exprefine.config import ConfigError, parse_config
from exprefine.refine.state_points import (
    chain_owner,
    chains,
    group_replicas,
    group_seed,
    group_start,
    join_groups,
    point_owner,
)
from exprefine.sampling import sample
from exprefine.workflows import run_refinement, run_sampling
from test_state_points import LJ, SAMPLING, _lattice, _target


def grouped(run_dir, n_replicas: int = 3, groups: int = 2, n_updates: int = 3, optimizer: str = "adam") -> dict:
    """32-atom LJ argon at 85 K, ``n_replicas`` replicas in ``groups`` MD chains, against the argon g(r)."""
    return {
        "run_dir": str(run_dir), "threads": 1, "device": "cpu",
        "system": {"lattice": _lattice(0.02125), "n_replicas": n_replicas, "replica_groups": groups},
        "potential": {"terms": [LJ]}, "sampling": dict(SAMPLING), "targets": [_target()],
        "refine": {"n_updates": n_updates, "learning_rate": 0.03, "chunk_size": 10, "final_check": False,
                   "ess_threshold": 0.95, "optimizer": optimizer},
    }


def test_groups_are_consecutive_and_even_and_seeds_differ():
    assert group_replicas(5, 2) == [[0, 1, 2], [3, 4]]
    assert group_replicas(4, 4) == [[0], [1], [2], [3]]
    assert group_replicas(3, 1) == [[0, 1, 2]]
    seeds = [group_seed(7, g) for g in range(4)]
    assert seeds[0] == 7 and len(set(seeds)) == 4
    assert seeds == [group_seed(7, g) for g in range(4)]  # reproducible
    assert all(0 <= s < 2**63 for s in seeds)  # a valid torch seed


def test_chains_are_dealt_in_turn_and_a_point_is_reweighted_where_its_group_0_runs(tmp_path):
    raw = grouped(tmp_path)
    raw["systems"] = [{"name": "a", "lattice": _lattice(0.02125), "n_replicas": 2, "replica_groups": 2,
                       "targets": [_target()]},
                      {"name": "b", "lattice": _lattice(0.019), "targets": [_target()]}]
    del raw["system"], raw["targets"]
    points = build_state_points(parse_config(raw))
    assert chains(points) == [(0, 0), (0, 1), (1, 0)]
    assert [chain_owner(points, c, 2) for c in chains(points)] == [0, 1, 0]
    assert [point_owner(points, k, 2) for k in range(2)] == [0, 0]
    assert [point_owner(points, k, 3) for k in range(2)] == [0, 2]
    # one group per state point: state point k on rank k mod world size, as before replica groups
    single = [copy.copy(points[1]) for _ in range(5)]
    assert [point_owner(single, k, 2) for k in range(5)] == [0, 1, 0, 1, 0]


def test_a_joined_trajectory_is_its_groups_own_runs(tmp_path):
    cfg = parse_config(grouped(tmp_path))
    (point,) = build_state_points(cfg)
    potential = build_potential(cfg)
    parts = []
    for g in range(2):
        start = group_start(point, g)
        assert start.n_systems == [2, 1][g]
        generator = torch.Generator().manual_seed(group_seed(point.sampler_settings.seed, g))
        parts.append(sample(potential, start, point.sampler_settings, generator=generator, progress=False).trajectory)
    joined = join_groups(point, parts)
    assert joined.n_frames == parts[0].n_frames + parts[1].n_frames
    assert torch.equal(joined.positions_A[parts[0].n_frames:], parts[1].positions_A)
    assert sorted(set(joined.replica.tolist())) == [0, 1, 2]
    assert set(joined.replica[parts[0].n_frames:].tolist()) == {2}
    # the groups' streams differ: group 1's replica does not repeat group 0's first replica
    assert not torch.equal(parts[1].positions_A[0], parts[0].positions_A[0])

    # the refinement's first trajectory is exactly these frames
    result = run_refinement(parse_config(grouped(tmp_path / "run", n_updates=1)), progress=False)
    first = type(joined).load(tmp_path / "run" / "trajectories" / "trajectory_0000.pt")
    assert torch.equal(first.positions_A, joined.positions_A) and torch.equal(first.replica, joined.replica)
    assert result.history[0].n_frames == joined.n_frames
    # and `exprefine sample` gives the same frames: what a user samples first is what a refinement starts from
    (report,) = run_sampling(parse_config(grouped(tmp_path / "sampled")), progress=False)
    assert len(report.results) == 2 and report.wall_time_s == sum(r.wall_time_s for r in report.results)
    saved = type(joined).load(tmp_path / "sampled" / "sample" / "trajectory.pt")
    assert torch.equal(saved.positions_A, joined.positions_A) and torch.equal(saved.replica, joined.replica)


def test_grouped_run_resumes_to_the_uninterrupted_run_and_refuses_another_group_count(tmp_path):
    full = run_refinement(parse_config(grouped(tmp_path / "full")), progress=False)
    run_refinement(parse_config(grouped(tmp_path / "split", n_updates=2)), progress=False)
    resumed = run_refinement(parse_config(grouped(tmp_path / "split")), resume=True, progress=False)
    assert [r.loss for r in resumed.history] == pytest.approx([r.loss for r in full.history], rel=1e-12)
    assert resumed.parameters == pytest.approx(full.parameters, rel=1e-12)
    ck = torch.load(tmp_path / "split" / "checkpoints" / "latest.pt", weights_only=True)
    assert len(ck["replica_groups"]) == 1 and ck["md_state"]["positions"].shape[0] == 2 * 32
    assert ck["replica_groups"][0]["md_state"]["positions"].shape[0] == 32
    with pytest.raises(ValueError, match="the run has 2 replica group\\(s\\), the config 3") as info:
        run_refinement(parse_config(grouped(tmp_path / "split", groups=3)), resume=True, progress=False)
    assert "\n" not in str(info.value)


def test_grouped_refinement_in_md_segments_equals_the_one_piece_refinement(tmp_path):
    """``refine.segment_ps`` from the config: each chain's samplings go in segments of its own, and the
    refinement is the one of one-piece MD; the finished segment folders are gone at the end."""
    plain = run_refinement(parse_config(grouped(tmp_path / "plain")), progress=False)
    raw = grouped(tmp_path / "segmented")
    raw["refine"]["segment_ps"] = 0.3
    segmented = run_refinement(parse_config(raw), progress=False)
    assert plain.n_samplings == segmented.n_samplings >= 2
    assert [r.loss for r in segmented.history] == [r.loss for r in plain.history]
    assert segmented.parameters == plain.parameters
    assert (tmp_path / "segmented" / "md_segments").is_dir()
    assert not list((tmp_path / "segmented").rglob("segment_*.pt"))


def test_more_groups_than_replicas_fail_in_one_line():
    with pytest.raises(ConfigError, match="replica_groups \\(3\\) cannot exceed n_replicas \\(2\\)") as info:
        parse_config(grouped("/tmp/x", n_replicas=2, groups=3), source="c.yaml")
    assert "\n" not in str(info.value)


def test_sample_in_segments_resumes_a_stopped_run_to_the_same_frames(tmp_path, capsys):
    import yaml

    from exprefine.cli.main import main
    from exprefine.sampling import sample_in_segments
    from exprefine.trajectory import Trajectory

    (plain,) = run_sampling(parse_config(grouped(tmp_path / "plain")), progress=False)
    raw = grouped(tmp_path / "segmented")
    cfg = parse_config(raw)
    (point,) = build_state_points(cfg)
    # a stopped run: group 0 has one of its four segments (1 ps of production in 0.3-ps segments: 30+30+30+10 steps)
    work = tmp_path / "segmented" / "sample" / "segments"
    stopped = sample_in_segments(build_potential(cfg), group_start(point, 0), point.sampler_settings,
                                 work / "group_0", segment_steps=30, max_new_segments=1)
    assert len(stopped.segments) == 1 and stopped.n_segments == 4
    path = tmp_path / "segmented.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SystemExit) as info:
        main(["sample", str(path), "--segment-ps", "0.3", "--no-progress"])
    assert info.value.code == 0
    err = capsys.readouterr().err
    assert "segment 2/4" in err and "segment 1/4" in err  # group 0 went on from segment 2, group 1 from the start
    saved = Trajectory.load(tmp_path / "segmented" / "sample" / "trajectory.pt")
    # the same frames; after a resume to round-off only (≈ 1e-15 Å: summation order in a new process)
    assert torch.allclose(saved.positions_A, plain.trajectory.positions_A, rtol=0.0, atol=1e-12)
    assert torch.equal(saved.replica, plain.trajectory.replica)
    assert sorted(p.name for p in work.iterdir()) == ["group_0", "group_1"]
    with pytest.raises(SystemExit) as info:
        main(["evaluate", str(path), "--frames", str(tmp_path / "x.dump"), "--segment-ps", "1"])
    assert info.value.code != 0 and "--segment-ps goes with sampling" in capsys.readouterr().err
