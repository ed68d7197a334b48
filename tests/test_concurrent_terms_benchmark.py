"""benchmarks/concurrent_terms.py --smoke: DeePMD + D3 side by side give the sequential energies, forces and stress."""

from __future__ import annotations

import pytest

from conftest import REPO, import_script


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_smoke_compares_sequence_and_side_by_side_on_the_1x1_bilayer():
    pytest.importorskip("deepmd")
    pytest.importorskip("dftd3")
    bench = import_script(REPO / "benchmarks", "concurrent_terms")
    (row,) = bench.main(["--smoke", "--threads", "1"])
    assert (row.size, row.n_atoms) == ("1x1", 28)
    assert min(row.mlip_alone_s, row.d3_alone_s, row.sequential_1_thread_s, row.concurrent_s) > 0
    # the same two terms added in the same order; forces and stress to the order of the backward sums
    assert row.max_energy_difference_eV < 1e-12
    assert row.max_force_difference_eV_per_A < 1e-12 and row.max_stress_difference_eV_per_A3 < 1e-14
