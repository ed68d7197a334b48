"""`exprefine report`, the figures it draws, plain progress lines and one-line warnings (no MD: seconds)."""

from __future__ import annotations

import json
import logging
import math
import warnings

import numpy as np
import pytest
import torch

from exprefine.cli.main import main
from exprefine.data.metrics import DFTErrors
from exprefine.experiment import ExperimentalData
from exprefine.observables import RadialDistribution
from exprefine.provenance import append_run_info, read_run_info
from exprefine.quiet import silence_dependency_noise, warning_line
from exprefine.refine import Evaluation, RefinementResult, Target, UpdateRecord
from exprefine.refine.curves import read_curves, target_curves, write_curves
from exprefine.refine.log import RunLog, update_line
from exprefine.refine.plots import plot_curves
from exprefine.report import build_report, read_runs, render_markdown, write_report


def _target_and_evaluations():
    """A g(r) target measured at 51 points with σ, and a before and an after model on a 0.05 Å grid."""
    rdf = RadialDistribution(r_max_A=8.0, bin_width_A=0.05, species=("Ar", "Ar"))
    grid = rdf.grid().numpy()
    x = np.linspace(2.5, 7.5, 51)
    truth = lambda r: 1.0 + np.exp(-(r - 3.8) ** 2 / 0.1) * 1.5 - np.exp(-r)  # noqa: E731
    data = ExperimentalData(x=x, y=truth(x), sigma=np.full(51, 0.02), x_unit="angstrom", quantity="g",
                            source="/data/digitised_gr.txt")
    reference = torch.full((len(grid),), float("nan"), dtype=torch.float64)
    covered = torch.from_numpy((grid >= x[0]) & (grid <= x[-1]))
    reference[covered] = torch.from_numpy(np.interp(grid[covered.numpy()], x, data.y))
    sigma = torch.full((len(grid),), 0.02, dtype=torch.float64)
    mask = covered & torch.from_numpy(grid >= 3.0)
    target = Target("g_r", rdf, reference, sigma=sigma, mask=mask, measured=data)

    def evaluation(shift_A: float) -> Evaluation:
        prediction = torch.from_numpy(truth(grid + shift_A))
        return Evaluation(predictions=[prediction], rmse={"g_r": target.rmse(prediction)}, loss=0.1, n_frames=10,
                          fingerprint="x", standard_errors={"g_r": torch.full((len(grid),), 0.01)})

    return target, evaluation(-0.2), evaluation(-0.02)


def _synthetic_refinement(run_dir):
    """The files of a finished fused refinement, written without MD: 4 updates, one step rejected,
    one blow-up rolled back, two sessions (resumed), held-out DFT errors."""
    run_dir.mkdir(parents=True)
    target, before, after = _target_and_evaluations()
    write_curves(target_curves([target], [("before", before), ("after", after)]), run_dir / "curves.json")
    log = RunLog(run_dir)
    for k in range(4):
        log.append(UpdateRecord(update=k, loss=0.1 / (k + 1), ess_fraction=0.8, resampled=k % 2 == 0,
                                learning_rate=0.01, wall_time_s=1.0, n_frames=10, target_rmse={"g_r": 0.1 / (k + 1)},
                                parameters={"sigma_A[Ar-Ar]": 3.6 - 0.05 * k, "epsilon_K[Ar-Ar]": 72.0 + 10 * k},
                                accepted=k != 2, rollbacks=1 if k == 3 else 0))
    errors = DFTErrors(n_frames=5, n_atoms=50, energy_rmse_meV_per_atom=3.0, energy_mae_meV_per_atom=2.0,
                       force_rmse_meV_per_A=80.0, force_mae_meV_per_A=60.0,
                       force_rmse_by_element_meV_per_A={"Ar": 80.0}, force_mae_by_element_meV_per_A={"Ar": 60.0},
                       n_atoms_by_element={"Ar": 50}, energy_mean_meV_per_atom=1.0, energy_sd_meV_per_atom=2.5)
    history = [UpdateRecord(**json.loads(line)) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    result = RefinementResult(history=history, before=before, after=after, wall_time_s=300.0, n_samplings=6,
                              run_dir=run_dir, dft_before=errors, dft_after=errors, wall_time_segments_s=[200.0, 100.0],
                              parameters={"sigma_A[Ar-Ar]": 3.4, "epsilon_K[Ar-Ar]": 110.0})
    (run_dir / "summary.json").write_text(json.dumps(result.summary()))
    (run_dir / "config.yaml").write_text("run_dir: .\n")
    append_run_info(run_dir)
    append_run_info(run_dir)
    return run_dir


def test_curves_keep_the_data_at_its_own_points(tmp_path):
    target, before, after = _target_and_evaluations()
    (curve,) = target_curves([target], [("before", before), ("after", after)])
    assert len(curve.measured_x) == 51 and curve.measured_sigma == pytest.approx([0.02] * 51)
    assert len(curve.grid) == len(curve.models[0].values) == 160
    assert curve.fit_range == pytest.approx((3.025, 7.475))
    again = read_curves(write_curves([curve], tmp_path / "curves.json"))
    assert again[0].measured_x == curve.measured_x and again[0].models[1].rmse == curve.models[1].rmse
    # the data file is recorded relative to the curves file's folder
    from dataclasses import replace

    (tmp_path / "run").mkdir()
    with_file = replace(curve, source=str(tmp_path / "data" / "g_r.csv"))
    (moved,) = read_curves(write_curves([with_file], tmp_path / "run" / "curves.json"))
    assert moved.source == "../data/g_r.csv"
    (path,) = plot_curves(again, tmp_path)
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_report_of_a_refinement(tmp_path):
    run_dir = _synthetic_refinement(tmp_path / "run")
    report = build_report(run_dir)
    text = render_markdown(report)
    assert "| g_r | `digitised_gr.txt` | 51 (" in text  # the data's own points, and how many in the fit range
    assert "| `sigma_A[Ar-Ar]` | 3.6 | 3.4 | -5.56 % |" in text
    assert "4 (1 step rejected, 1 blow-up rolled back)" in text
    assert "Steps rejected by the update rule (red crosses), at update: 2." in text
    assert "at update (how many; dashed red lines): 3 (1)" in text
    assert "Held-out reference (DFT) frames" in text and "| force RMSE Ar (50 atoms) | meV/Å | 80 | 80 |" in text
    assert "in 2 sessions (resumed; 200 + 100 s" in text
    assert "torch " + torch.__version__ in text
    for figure in report.figures:
        assert figure.exists() and figure.parent == run_dir / "report"
        assert f"]({figure.name})" in text
    path = write_report(run_dir, embed=True)
    assert "data:image/png;base64," in path.read_text()
    assert len(read_run_info(run_dir)) == 2


def test_report_of_a_sample_folder_and_of_nothing(tmp_path, capsys):
    target, before, _ = _target_and_evaluations()
    folder = tmp_path / "run" / "sample"
    folder.mkdir(parents=True)
    write_curves(target_curves([target], [("model", before)]), folder / "curves.json")
    (folder / "evaluation.json").write_text(json.dumps({"rmse": before.rmse, "loss": 0.1, "n_frames": 10,
                                                        "wall_time_s": 12.0}))
    (run,) = read_runs(tmp_path / "run")
    assert run.kind == "sample" and run.sampled is not None and run.sampled.n_frames == 10
    with pytest.raises(SystemExit):
        main(["report", str(tmp_path / "run")])
    assert "report:" in capsys.readouterr().out
    assert "Sampling with the configured potential" in (tmp_path / "run" / "report" / "report.md").read_text()
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as code:
        main(["report", str(tmp_path / "empty")])
    err = capsys.readouterr().err.strip()
    assert code.value.code == 2 and len(err.splitlines()) == 1 and "no exprefine run here" in err


def test_update_line_is_plain():
    record = UpdateRecord(update=2, loss=0.0123, ess_fraction=0.87, resampled=True, learning_rate=0.01,
                          wall_time_s=1.0, n_frames=10, accepted=False, rollbacks=2)
    line = update_line(record, 12, 45.2)
    assert line == ("update 2 [3/12]  loss 0.0123  N_eff/N 0.87  resampled  step rejected  "
                    "2 blow-ups rolled back  elapsed 45 s")


def test_warnings_are_one_plain_line():
    import exprefine.refine.refiner as ours

    assert warning_line(RuntimeWarning("the last step raised the loss (1 > 0.5); keeping the last accepted "
                                       "parameters"), RuntimeWarning, ours.__file__) == \
        "warning: the last step raised the loss (1 > 0.5); keeping the last accepted parameters"
    line = warning_line(UserWarning("first\nsecond"), UserWarning, "/x/lib/python3.11/site-packages/e3nn/o3.py")
    assert line == "warning from e3nn (UserWarning): first"


def test_cli_prints_warnings_without_source_paths(tmp_path, capsys, monkeypatch):
    import exprefine.cli.main as cli

    def warn_and_fail(argv):
        warnings.warn("keeping the last accepted parameters", RuntimeWarning, stacklevel=1)
        return 0

    monkeypatch.setattr(cli, "run", warn_and_fail)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with pytest.raises(SystemExit):
            main(["report", str(tmp_path)])
    err = capsys.readouterr().err  # raised here, in a test module: named as a module outside exprefine
    assert err == "exprefine: warning from test_report (RuntimeWarning): keeping the last accepted parameters\n"


def test_triton_noise_is_dropped_and_other_messages_pass(caplog):
    silence_dependency_noise()
    silence_dependency_noise()  # idempotent
    logger = logging.getLogger("torch._library.triton")
    assert len(logger.filters) == 1
    with caplog.at_level(logging.WARNING):
        logger.warning("Triton not available, find_triton_kernels = []")
        logger.warning("a kernel failed to compile")
    assert [r.getMessage() for r in caplog.records] == ["a kernel failed to compile"]


def test_summary_says_how_the_wall_time_adds_up():
    target, before, after = _target_and_evaluations()
    result = RefinementResult(history=[], before=before, after=after, wall_time_s=30.0, n_samplings=2, run_dir=None,
                              wall_time_segments_s=[20.0, 10.0])
    summary = result.summary()
    assert summary["wall_time_segments_s"] == [20.0, 10.0]
    assert math.isclose(sum(summary["wall_time_segments_s"]), summary["wall_time_s"])
