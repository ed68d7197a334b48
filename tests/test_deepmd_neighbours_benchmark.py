"""benchmarks/deepmd_neighbours.py --smoke: both neighbour builders give the same DeePMD energies, forces and stress."""

from __future__ import annotations

import pytest

from conftest import REPO, import_script


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_smoke_compares_the_builders_on_the_1x1_bilayer():
    pytest.importorskip("deepmd")
    bench = import_script(REPO / "benchmarks", "deepmd_neighbours")
    (row,) = bench.main(["--smoke"])
    assert (row.size, row.n_atoms) == ("1x1", 28)
    assert min(row.deepmd_builder_s, row.vesin_s, row.vesin_lists_s) > 0
    # the same neighbours in the same order: energies equal, derivatives to the order of the backward sums
    assert row.max_energy_difference_eV < 1e-9
    assert row.max_force_difference_eV_per_A < 1e-9 and row.max_stress_difference_eV_per_A3 < 1e-9
    # the old builder was put on the benchmark's own model only
    from exprefine.potentials.deepmd import DeepmdPotential
    assert "extended_inputs" in DeepmdPotential.frame_energies.__code__.co_names
