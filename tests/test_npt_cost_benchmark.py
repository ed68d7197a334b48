"""benchmarks/npt_cost.py --smoke: a cell update costs one extra evaluation, and the trajectory is unchanged."""

from __future__ import annotations

import pytest

from conftest import REPO, import_script


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_smoke_counts_the_evaluations_of_nvt_and_both_npt_loops():
    pytest.importorskip("deepmd")
    pytest.importorskip("dftd3")
    bench = import_script(REPO / "benchmarks", "npt_cost")
    (row,) = bench.main(["--smoke"])
    assert (row.size, row.n_atoms) == ("1x1", 28)
    assert min(row.nvt_steps_per_s, row.npt_steps_per_s, row.npt_separate_stress_steps_per_s) > 0
    # 10 steps, one update: 10 + 1 evaluations with the stress from the step before, 10 + 2 without
    assert row.npt_calls_per_step == pytest.approx(1.1) and row.npt_separate_stress_calls_per_step == pytest.approx(1.2)
    assert row.same_trajectory
