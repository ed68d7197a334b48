"""exprefine sample / evaluate with a systems: config: every state point with its own structure,
sampling overrides and targets, each in its own folder."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from exprefine.cli.main import main
from exprefine.trajectory import Trajectory
from exprefine.units import kT_eV
from test_state_points import two_state_points


def _short(raw: dict) -> dict:
    raw["sampling"].update(equilibration_ps=0.1, production_ps=0.3)
    return raw


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    return int(info.value.code), out, err


def test_sample_runs_every_state_point_with_its_overrides(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_short(two_state_points(tmp_path / "run"))))
    code, out, err = _run(["sample", str(path), "--no-progress"], capsys)
    assert code == 0, err
    assert "state point cold:" in out and "state point hot:" in out
    for name, temperature_K, density in (("cold", 85.0, 0.02125), ("hot", 120.0, 0.019)):
        folder = tmp_path / "run" / "sample" / name
        trajectory = Trajectory.load(folder / "trajectory.pt")
        assert trajectory.kT_eV == pytest.approx(kT_eV(temperature_K))  # the override, not the shared 85 K
        volume_A3 = float(torch.linalg.det(trajectory.cells_A[0]))
        assert trajectory.positions_A.shape[1] / volume_A3 == pytest.approx(density, rel=1e-9)  # its own lattice
        assert trajectory.n_frames == 3
        evaluation = json.loads((folder / "evaluation.json").read_text())
        assert (evaluation["state_point"], evaluation["temperature_K"]) == (name, temperature_K)
        assert (folder / "target_g_r.png").exists() and (folder / "curves.json").exists()


def test_frames_of_several_state_points_need_a_name(tmp_path, capsys):
    raw = _short(two_state_points(tmp_path / "run"))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    frames = tmp_path / "frames.extxyz"
    frames.write_text("")
    code, _, err = _run(["evaluate", str(path), "--frames", str(frames)], capsys)
    assert code == 2
    assert err.strip() == ("exprefine: error: evaluate --frames: the config has 2 state points (cold, hot); "
                           "name the frames' one with --state-point NAME")
    code, _, err = _run(["evaluate", str(path), "--frames", str(frames), "--state-point", "warm"], capsys)
    assert code == 2 and "--state-point 'warm': no such state point; the config has cold, hot" in err
    assert len(err.strip().splitlines()) == 1


def test_evaluate_a_checkpoint_samples_every_state_point(tmp_path, capsys):
    raw = _short(two_state_points(tmp_path / "run", n_updates=1))
    raw["refine"]["final_check"] = False
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    code, _, err = _run(["refine", str(path), "--no-progress"], capsys)
    assert code == 0, err
    code, out, err = _run(["evaluate", str(path), "--checkpoint", str(tmp_path / "run" / "final_model.pt")], capsys)
    assert code == 0, err
    for name in ("cold", "hot"):
        evaluation = json.loads((tmp_path / "run" / "evaluate" / name / "evaluation.json").read_text())
        assert evaluation["state_point"] == name and evaluation["n_frames"] == 3
    assert out.count("state point ") == 2
