"""g-C3N4 structure builder: composition, coordination, spacing, stacking, defects."""

from __future__ import annotations

import numpy as np
import pytest
from ase.neighborlist import neighbor_list

from exprefine.structures import (
    ROLES,
    bonded_neighbour_counts,
    carbon_defects,
    gcn_layer,
    gcn_stack,
    substitute_carbon,
)

EXPECTED_NEIGHBOURS = {"central_N": 3, "edge_N": 2, "bridging_N": 3, "inner_C": 3, "outer_C": 3}
ROLE_COUNTS = {"central_N": 1, "edge_N": 6, "bridging_N": 1, "inner_C": 3, "outer_C": 3}


def _counts(atoms):
    symbols = atoms.get_chemical_symbols()
    return symbols.count("C"), symbols.count("N")


def _assert_bonding(atoms):
    """Role-wise coordination at a 1.6 Å cutoff, every bond 1.2–1.5 Å."""
    i, d = neighbor_list("id", atoms, 1.6)
    assert d.min() > 1.2 and d.max() < 1.5, (d.min(), d.max())
    counts = bonded_neighbour_counts(atoms, 1.6)
    for role, n in EXPECTED_NEIGHBOURS.items():
        mask = atoms.arrays["roles"] == role
        assert mask.any()
        assert np.all(counts[mask] == n), (role, counts[mask])
    carbon = atoms.numbers == 6
    assert np.all(counts[carbon] == 3)


def test_single_cell_composition_and_roles():
    atoms = gcn_layer()
    assert len(atoms) == 14
    assert _counts(atoms) == (6, 8)
    assert set(atoms.arrays["roles"]) == set(ROLES)
    for role, n in ROLE_COUNTS.items():
        assert np.sum(atoms.arrays["roles"] == role) == n
    assert np.allclose(atoms.cell.cellpar()[[0, 1, 5]], [7.032, 7.032, 60.0])


@pytest.mark.parametrize("supercell, n_cells", [((1, 1), 1), ((2, 3), 6), ([[2, 1], [-1, 1]], 3)])
def test_supercell_composition_and_coordination(supercell, n_cells):
    atoms = gcn_stack(2, "AB", 3.2, supercell=supercell)
    assert len(atoms) == 28 * n_cells
    assert _counts(atoms) == (12 * n_cells, 16 * n_cells)
    assert np.isclose(atoms.get_volume(), n_cells * gcn_stack(2, "AB", 3.2).get_volume())
    _assert_bonding(atoms)


def test_corrugated_layers_keep_bonding():
    atoms = gcn_stack(2, "AB", 3.3, supercell=(3, 1), corrugation_amplitude_A=0.4)
    _assert_bonding(atoms)
    z = atoms.positions[atoms.arrays["layer"] == 0, 2]
    assert 0.6 < z.max() - z.min() <= 0.8 + 1e-9


@pytest.mark.parametrize("stacking", ["AB", "AA'"])
@pytest.mark.parametrize("amplitude_A", [0.0, 0.3])
def test_interlayer_spacing_is_d(stacking, amplitude_A):
    d = 3.17
    atoms = gcn_stack(4, stacking, d, supercell=(2, 1), corrugation_amplitude_A=amplitude_A)
    assert np.isclose(atoms.cell[2, 2], 4 * d)
    layer = atoms.arrays["layer"]
    # remove the corrugation Δz = h·sin(2π t1) at each atom's own in-plane position
    t1 = atoms.get_scaled_positions()[:, 0]
    z_flat = atoms.positions[:, 2] - amplitude_A * np.sin(2.0 * np.pi * t1)
    for k in range(4):
        assert np.allclose(z_flat[layer == k], z_flat[layer == 0][0] + k * d, atol=1e-9)
    if amplitude_A > 0.0:
        assert np.ptp(atoms.positions[layer == 0, 2]) > amplitude_A


def test_ab_shift_and_aa_prime_inversion():
    for stacking, transform in (("AB", lambda s: s + 1.0 / 3.0), ("AA'", lambda s: -s)):
        atoms = gcn_stack(2, stacking, 3.2)
        s = atoms.get_scaled_positions()[:, :2]
        layer = atoms.arrays["layer"]
        s0, s1 = s[layer == 0], s[layer == 1]
        delta = np.mod(s1 - transform(s0) + 0.5, 1.0) - 0.5
        assert np.allclose(delta, 0.0, atol=1e-9), stacking
        assert np.array_equal(atoms.arrays["roles"][layer == 0], atoms.arrays["roles"][layer == 1])
    # AB: the shift puts the bridging N of layer 1 over the central N of layer 0
    atoms = gcn_stack(2, "AB", 3.2)
    s = atoms.get_scaled_positions()[:, :2]
    layer = atoms.arrays["layer"]
    bridging_1 = s[(layer == 1) & (atoms.arrays["roles"] == "bridging_N")][0]
    assert np.allclose(np.mod(bridging_1 + 0.5, 1.0) - 0.5, [0.0, 0.0], atol=1e-9)


def test_bulk_ab_needs_even_layers_and_slab_vacuum():
    with pytest.raises(ValueError, match="even n_layers"):
        gcn_stack(3, "AB", 3.2)
    slab = gcn_stack(3, "AB", 3.2, vacuum_A=12.0)
    assert np.isclose(slab.cell[2, 2], 2 * 3.2 + 12.0)
    layer = gcn_layer(vacuum_A=15.0)
    assert np.isclose(layer.cell[2, 2], 15.0)


def test_carbon_defect_pairs_counts_and_roles():
    pristine = gcn_stack(2, "AB", 3.2, supercell=(2, 2))  # 8 cells: C48 N64
    atoms = carbon_defects(pristine, "central_N", n_defects=2, seed=1)
    assert _counts(atoms) == (50, 62)
    defect = atoms.arrays["defect"]
    assert defect.sum() == 2
    assert np.all(atoms.arrays["roles"][defect] == "central_N")
    assert np.all(atoms.numbers[defect] == 6)
    # an even electron count: C has one valence electron fewer than N
    assert (4 * _counts(atoms)[0] + 5 * _counts(atoms)[1]) % 2 == 0
    # the same seed gives the same choice
    again = carbon_defects(pristine, "central_N", n_defects=2, seed=1)
    assert np.array_equal(again.arrays["defect"], defect)


def test_carbon_defect_fraction_and_parity():
    pristine = gcn_stack(2, "AB", 3.2, supercell=(2, 2))  # 8 bridging, 8 central sites
    atoms = carbon_defects(pristine, "bridging_N", site_fraction=0.5, seed=3)
    assert atoms.arrays["defect"].sum() == 4
    assert np.all(atoms.arrays["roles"][atoms.arrays["defect"]] == "bridging_N")
    mixed = carbon_defects(pristine, ("central_N", "bridging_N"), site_fraction=0.2, seed=0)
    assert mixed.arrays["defect"].sum() == 4  # 0.2 × 16 = 3.2 → nearest even: 4
    with pytest.raises(ValueError, match="odd"):
        carbon_defects(pristine, "central_N", n_defects=1)
    single = carbon_defects(pristine, "central_N", n_defects=1, even_electrons=False)
    assert single.arrays["defect"].sum() == 1
    with pytest.raises(ValueError, match="only N"):
        substitute_carbon(pristine, [1])  # atom 1 is an inner C
    with pytest.raises(ValueError, match="N sites only"):
        carbon_defects(pristine, "inner_C", n_defects=2)
