"""A refinement whose first trajectory is given (``system.start_trajectory_file``), not sampled."""

from __future__ import annotations

import pytest
import torch

from exprefine.builders import build_refiner
from exprefine.config import load_config
from exprefine.refine.records import evaluate_targets
from exprefine.refine.state_points import last_frames
from exprefine.sampling import sample
from exprefine.trajectory import Trajectory
from test_config_cli import tiny_config, write


def _given(tmp_path, raw) -> tuple[Trajectory, str]:
    """A trajectory sampled with the config's starting parameters at its state point, saved."""
    refiner = build_refiner(load_config(write(tmp_path / "sampler.yaml", raw)), progress=False)
    point = refiner.points[0]
    trajectory = sample(refiner.potential, point.start, point.sampler_settings, progress=False).trajectory
    path = tmp_path / "given.pt"
    trajectory.save(path)
    return trajectory, str(path)


def test_the_first_update_reweights_the_given_frames_and_md_continues_from_the_last(tmp_path):
    raw = tiny_config(tmp_path / "sampler_run", final_check=False)
    given, path = _given(tmp_path, raw)
    raw = tiny_config(tmp_path / "run", final_check=False, n_updates=1)
    raw["system"]["start_trajectory_file"] = path
    refiner = build_refiner(load_config(write(tmp_path / "run.yaml", raw)), progress=False)
    expected = evaluate_targets(refiner.targets, given, refiner.potential)

    loop = refiner._fresh_loop()
    md_start = loop.chains[(0, 0)].md_start
    assert torch.equal(md_start.positions, given.positions_A[-1].to(md_start.dtype))
    assert torch.equal(md_start.cell[0], given.cells_A[-1].to(md_start.dtype))
    assert loop.before[0].loss == pytest.approx(expected.loss, rel=1e-12)

    result = refiner.run()
    kept = Trajectory.load(tmp_path / "run" / "trajectories" / "trajectory_0000.pt")
    assert torch.equal(kept.positions_A, given.positions_A) and kept.fingerprint == given.fingerprint
    assert result.before.loss == pytest.approx(expected.loss, rel=1e-12)
    assert result.history[0].loss == pytest.approx(expected.loss, rel=1e-9)  # the update starts from it


def test_last_frames_takes_each_replicas_latest_frame():
    n_atoms, times, replicas = 2, [0.0, 0.0, 10.0, 10.0, 20.0, 20.0], [0, 1, 0, 1, 0, 1]
    positions = torch.arange(6 * n_atoms * 3, dtype=torch.float64).reshape(6, n_atoms, 3)
    trajectory = Trajectory(positions, torch.eye(3, dtype=torch.float64).expand(6, 3, 3) * 10, torch.tensor([True] * 3),
                            torch.tensor([18, 18]), torch.tensor([39.95, 39.95], dtype=torch.float64),
                            torch.zeros(6, dtype=torch.float64), 0.01, "x",
                            time_fs=torch.tensor(times, dtype=torch.float64), replica=torch.tensor(replicas))
    state = last_frames(trajectory)
    assert state.n_systems == 2
    assert torch.equal(state.positions, positions[[4, 5]].reshape(4, 3))


@pytest.mark.parametrize("change, message", [
    (("potential", "terms", 0, "sigma_A", 3.61), "was sampled with other parameters"),
    (("sampling", "temperature_K", 90.0), "has kT = "),
    (("sampling", "pressure_bar", 1.0), "was sampled at constant volume, the sampling is at pressure"),
    (("system", "n_replicas", 2), "holds replicas \\[0\\], the state point 2"),
    (("system", "lattice", "repeat", [3, 3, 4]), "has 108 atoms of other elements or order .*144 atoms"),
])
def test_a_trajectory_that_cannot_stand_for_the_first_sampling_is_refused(tmp_path, change, message):
    _, path = _given(tmp_path, tiny_config(tmp_path / "sampler_run"))
    raw = tiny_config(tmp_path / "run")
    raw["system"]["start_trajectory_file"] = path
    *keys, value = change
    node = raw
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    refiner = build_refiner(load_config(write(tmp_path / "run.yaml", raw)), progress=False)
    with pytest.raises(ValueError, match=f"state point 'system': start trajectory {message}") as err:
        refiner.run()
    assert len(str(err.value).splitlines()) == 1
    assert not (tmp_path / "run" / "trajectories").exists()  # refused before any MD


def test_replica_groups_continue_each_from_their_own_replicas_last_frame(tmp_path):
    raw = tiny_config(tmp_path / "sampler_run", final_check=False)
    raw["system"]["n_replicas"] = 2
    given, path = _given(tmp_path, raw)
    raw = tiny_config(tmp_path / "run", final_check=False, n_updates=1)
    raw["system"].update(n_replicas=2, replica_groups=2, start_trajectory_file=path)
    refiner = build_refiner(load_config(write(tmp_path / "run.yaml", raw)), progress=False)
    loop = refiner._fresh_loop()
    for replica in (0, 1):
        own = (given.replica == replica).nonzero().reshape(-1)
        md_start = loop.chains[(0, replica)].md_start
        assert md_start.n_systems == 1
        assert torch.equal(md_start.positions, given.positions_A[own[-1]].to(md_start.dtype))
    assert torch.equal(loop.current[0].trajectory.positions_A, given.positions_A)
