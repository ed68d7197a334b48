"""torch.distributed (gloo): 2 ranks equal 1 rank; a killed rank ends the run with a clear message; --resume continues.

Each test launches real processes (``python -m exprefine`` and ``torchrun``) on the 32-atom, two-state-point
argon config of test_state_points.py, or on one state point whose 3 replicas run as 2 replica groups
(test_replica_groups.py): a few seconds each.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from test_replica_groups import grouped
from test_state_points import two_state_points

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch without gloo")


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _command(config: Path, ranks: int, *extra: str) -> list[str]:
    cli = ["-m", "exprefine", "refine", str(config), "--no-progress", *extra]
    if ranks == 1:
        return [sys.executable, *cli]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}", *cli]


def _config(tmp_path: Path, name: str, layout=two_state_points, **kw) -> Path:
    raw = layout(tmp_path / name, **kw)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("optimizer", ["adam", "gauss_newton"])
def test_two_ranks_give_the_loss_gradient_and_steps_of_one_rank(tmp_path, optimizer):
    runs = {}
    for ranks in (1, 2):
        config = _config(tmp_path, f"r{ranks}", optimizer=optimizer)
        done = subprocess.run(_command(config, ranks), env=_env(), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[ranks] = tmp_path / f"r{ranks}"
    one, two = _rows(runs[1]), _rows(runs[2])
    assert len(one) == len(two) == 3
    for a, b in zip(one, two):
        # update 0 reweights the same first trajectories: the same loss to 1e-10; later ones too
        assert b["loss"] == pytest.approx(a["loss"], rel=0, abs=1e-10)
        assert b["point_loss"] == pytest.approx(a["point_loss"], rel=0, abs=1e-10)
        assert b["gradient_norm"] == pytest.approx(a["gradient_norm"], rel=1e-10, abs=0)
        assert (b["accepted"], b["resampled_points"]) == (a["accepted"], a["resampled_points"])
        assert b["parameters"] == pytest.approx(a["parameters"], rel=1e-12)
    final = [torch.load(runs[r] / "final_model.pt", weights_only=True)["potential_state"] for r in (1, 2)]
    for key in final[0]:
        assert torch.allclose(final[0][key], final[1][key], rtol=1e-12, atol=0)
    # rank 0 alone wrote the log; each rank wrote its own state point's trajectories
    assert (runs[2] / "cold" / "trajectories").is_dir() and (runs[2] / "hot" / "trajectories").is_dir()


@pytest.mark.parametrize("optimizer", ["adam", "gauss_newton"])
def test_replica_groups_on_two_ranks_give_the_run_of_one_rank(tmp_path, optimizer):
    """One state point, 3 replicas in 2 groups: rank 1 samples group 1, sends its frames to rank 0 (which
    reweights the state point), computes the energies (Gauss–Newton: and ∂U/∂θ) of its frames at every
    update and back-propagates their part of the gradient."""
    runs = {}
    for ranks in (1, 2):
        config = _config(tmp_path, f"g{ranks}", layout=grouped, optimizer=optimizer)
        done = subprocess.run(_command(config, ranks), env=_env(), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[ranks] = tmp_path / f"g{ranks}"
    one, two = _rows(runs[1]), _rows(runs[2])
    assert len(one) == len(two) == 3 and sum(r["resampled"] for r in one) >= 1
    for a, b in zip(one, two):
        # the last bits of a step may differ (BLAS on other memory): the bounds of the state-point test
        assert b["loss"] == pytest.approx(a["loss"], rel=0, abs=1e-10)
        assert (b["n_frames"], b["accepted"], b["resampled"]) == (a["n_frames"], a["accepted"], a["resampled"])
        assert b["parameters"] == pytest.approx(a["parameters"], rel=1e-12)
    # the first trajectory, group 1 sampled on rank 1, is the same frames bit for bit
    frames = [torch.load(runs[r] / "trajectories" / "trajectory_0000.pt", weights_only=True) for r in (1, 2)]
    assert torch.equal(frames[0]["positions_A"], frames[1]["positions_A"])
    assert torch.equal(frames[0]["replica"], frames[1]["replica"])
    checkpoints = [torch.load(runs[r] / "checkpoints" / "latest.pt", weights_only=True) for r in (1, 2)]
    assert len(checkpoints[1]["replica_groups"]) == 1  # rank 1's chain reached rank 0's checkpoint


def test_a_grouped_two_rank_run_resumes_on_two_ranks_to_the_uninterrupted_run(tmp_path):
    """Rank 1 reads its group's frames back from the joined trajectory file of the checkpoint."""
    full = _config(tmp_path, "full", layout=grouped, optimizer="gauss_newton")
    split = _config(tmp_path, "split", layout=grouped, optimizer="gauss_newton", n_updates=2)
    for config, extra in ((full, ()), (split, ()), (split, ("--resume", "--set", "refine.n_updates=3"))):
        done = subprocess.run(_command(config, 2, *extra), env=_env(), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    one, two = _rows(tmp_path / "full"), _rows(tmp_path / "split")
    assert [r["update"] for r in two] == [0, 1, 2]
    for a, b in zip(one, two):
        assert b["loss"] == pytest.approx(a["loss"], rel=0, abs=1e-10)
        assert b["parameters"] == pytest.approx(a["parameters"], rel=1e-12)


def _rank_pids(tag: str) -> dict[int, int]:
    """PIDs of the exprefine ranks whose command line holds ``tag``, by RANK."""
    out = {}
    for pid in Path("/proc").iterdir():
        if not pid.name.isdigit():
            continue
        try:
            cmd = (pid / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            env = (pid / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if tag in cmd and "torch.distributed.run" not in cmd:
            for item in env:
                if item.startswith(b"RANK="):
                    out[int(item[5:])] = int(pid.name)
    return out


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_a_killed_rank_ends_the_run_with_a_message_and_resume_continues(tmp_path):
    config = _config(tmp_path, "killed", n_updates=40)
    proc = subprocess.Popen(_command(config, 2), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = tmp_path / "killed" / "checkpoints" / "latest.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert checkpoint.exists(), proc.communicate()[1][-3000:]
    pids = _rank_pids(str(config))
    assert set(pids) == {0, 1}, pids
    os.kill(pids[1], signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    messages = [line for line in err.splitlines() if line.startswith("exprefine: distributed run ended")]
    assert messages and "continue with --resume" in messages[0], err[-3000:]
    finished = int(torch.load(checkpoint, weights_only=True)["next_update"])
    assert 1 <= finished < 40
    # resume with fewer updates in all: the run continues from the last finished update
    n = finished + 1
    done = subprocess.run(_command(config, 2, "--resume", "--set", f"refine.n_updates={n}"), env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r["update"] for r in _rows(tmp_path / "killed")] == list(range(n))
    assert int(torch.load(checkpoint, weights_only=True)["next_update"]) == n
