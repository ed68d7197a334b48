"""AngularDistribution: crystal angles, mixed species, ideal-gas sin θ, normalisation, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from conftest import TRICLINIC, make_trajectory
from exprefine.observables import AngularDistribution
from exprefine.observables.adf import reflected_gaussian_histogram, triplet_angles
from exprefine.state import from_atoms
from exprefine.trajectory import Trajectory


def from_crystal(atoms: Atoms) -> Trajectory:
    return make_trajectory(atoms.get_positions()[None], atoms.cell.array[None], atoms.get_atomic_numbers())


def peak_mass_and_centroid(obs: AngularDistribution, p: torch.Tensor, centre: float, half_width: float):
    """∫ p dθ and the p-weighted mean angle over |θ − centre| < half_width (output unit)."""
    theta = obs.grid()
    window = (theta - centre).abs() < half_width
    width = float(obs.bin_edges()[1] - obs.bin_edges()[0])
    mass = float(p[window].sum()) * width
    return mass, float((p[window] * theta[window]).sum() / p[window].sum())


# ------------------------------------------------------------------ crystals
@pytest.mark.parametrize("primitive", [False, True])
def test_fcc_first_shell_angles(primitive):
    a = 5.26
    # Cubic 3×3×3 cell, or the triclinic primitive cell (60° between vectors) 5×5×5.
    atoms = bulk("Ar", "fcc", a=a).repeat(5) if primitive else bulk("Ar", "fcc", a=a, cubic=True).repeat(3)
    obs = AngularDistribution(("Ar", "Ar", "Ar"), r_max_A=4.2, n_bins=180, smoothing_deg=1.0)
    assert obs.name == "adf_Ar_Ar_Ar_deg" and obs.unit == "1/degree"
    p = obs.evaluate(from_crystal(atoms))[0]
    assert float(p.sum()) * obs.bin_width_deg == pytest.approx(1.0, abs=1e-6)
    # 12 neighbours → 66 pairs: 24 at 60°, 12 at 90°, 24 at 120°, 6 at 180° (collinear, kept whole
    # by the reflection at 180°).
    for angle, share in ((60.0, 24 / 66), (90.0, 12 / 66), (120.0, 24 / 66)):
        mass, centroid = peak_mass_and_centroid(obs, p, angle, 6.0)
        # The kernel is cut at 5σ (< 6e-7 of its mass): mass to 1e-6, centroid to 1e-5°.
        assert mass == pytest.approx(share, abs=1e-6)
        assert centroid == pytest.approx(angle, abs=1e-5)
    mass, _ = peak_mass_and_centroid(obs, p, 180.0, 6.0)
    assert mass == pytest.approx(6 / 66, abs=1e-6)
    # Nothing between the peaks (gaps ≫ 5σ).
    theta = obs.grid()
    gaps = (theta < 54) | ((theta > 66) & (theta < 84)) | ((theta > 96) & (theta < 114))
    gaps = gaps | ((theta > 126) & (theta < 174))
    assert float(p[gaps].abs().max()) < 1e-8


def test_diamond_tetrahedral_angle_in_radians():
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(2)  # 64 atoms, 10.86 Å cube
    obs = AngularDistribution(("Si", "Si", "Si"), r_max_A=2.7, r_min_A=2.0, n_bins=360, smoothing_deg=0.5,
                              angle_unit="radian")
    assert obs.name == "adf_Si_Si_Si_rad" and obs.unit == "1/radian" and obs.grid_label() == "θ (rad)"
    p = obs.evaluate(from_crystal(atoms))[0]
    tetrahedral = math.acos(-1.0 / 3.0)  # 109.47°
    mass, centroid = peak_mass_and_centroid(obs, p, tetrahedral, math.radians(3.0))
    assert mass == pytest.approx(1.0, abs=1e-6)
    assert centroid == pytest.approx(tetrahedral, abs=1e-7)
    assert abs(float(obs.grid()[torch.argmax(p)]) - tetrahedral) <= math.radians(0.5)


def test_mixed_species_triplets_rocksalt():
    a = 5.64
    traj = from_crystal(bulk("NaCl", "rocksalt", a=a, cubic=True).repeat(3))
    # Cl–Na–Na within a/√2 + 0.2: each Na has 6 Cl at a/2 and 12 Na at a/√2; a Cl along +x sees
    # 4 Na at 45°, 4 at 90°, 4 at 135°, so 72 mixed pairs split into thirds.
    mixed = AngularDistribution(("Cl", "Na", "Na"), r_max_A=a / math.sqrt(2) + 0.2, smoothing_deg=1.0)
    p = mixed.evaluate(traj)[0]
    for angle in (45.0, 90.0, 135.0):
        mass, centroid = peak_mass_and_centroid(mixed, p, angle, 6.0)
        assert mass == pytest.approx(1 / 3, abs=1e-6) and centroid == pytest.approx(angle, abs=1e-5)
    # The order of the two neighbour species does not matter.
    torch.testing.assert_close(AngularDistribution(("Na", "Na", "Cl"), r_max_A=a / math.sqrt(2) + 0.2,
                                                   smoothing_deg=1.0).evaluate(traj)[0], p)
    # Cl–Na–Cl in the first shell: 15 pairs of the 6 octahedral Cl, 12 at 90° and 3 at 180°.
    octa = AngularDistribution(("Cl", "Na", "Cl"), r_max_A=a / 2 + 0.3, smoothing_deg=1.0)
    q = octa.evaluate(traj)[0]
    assert peak_mass_and_centroid(octa, q, 90.0, 6.0)[0] == pytest.approx(12 / 15, abs=1e-6)
    assert peak_mass_and_centroid(octa, q, 180.0, 6.0)[0] == pytest.approx(3 / 15, abs=1e-6)
    # Triplet count: 108 Na centres × 72 mixed pairs.
    state = traj.as_state()
    angles, _ = triplet_angles(state, (17, 11, 11), 0.0, a / math.sqrt(2) + 0.2)
    assert angles.numel() == 108 * 72


def test_water_molecule_angle():
    # One H–O–H at 104.5° in a 10 Å box: a single triplet, all of it in the bin holding 104.5°.
    theta = math.radians(104.5)
    h2o = Atoms("OH2", positions=[[5.0, 5.0, 5.0], [5.96, 5.0, 5.0], [5.0 + 0.96 * math.cos(theta),
                                                                        5.0 + 0.96 * math.sin(theta), 5.0]],
                cell=[10.0] * 3, pbc=True)
    obs = AngularDistribution(("H", "O", "H"), r_max_A=1.2, n_bins=700, smoothing_deg=0.0)
    p = obs.per_frame(from_atoms(h2o))[0]
    k = int(torch.argmax(p))
    assert float(obs.bin_edges()[k]) <= 104.5 < float(obs.bin_edges()[k + 1])
    assert float(p[k]) == pytest.approx(1.0 / obs.bin_width_deg)


# ------------------------------------------------------------------ ideal gas
def test_ideal_gas_follows_sine():
    n, frames = 300, 20
    rng = np.random.default_rng(3)
    positions = rng.random((frames, n, 3)) @ TRICLINIC
    traj = make_trajectory(positions, np.repeat(TRICLINIC[None], frames, axis=0), np.full(n, 18))
    obs = AngularDistribution(("Ar", "Ar", "Ar"), r_max_A=4.5, r_min_A=1.0, n_bins=36, smoothing_deg=0.0)
    p = obs.evaluate(traj)
    assert p.shape == (frames, 36)
    # Independent uniform directions: P(bin) = [cos lo − cos hi]/2, density P/Δθ per degree.
    edges = torch.deg2rad(obs.bin_edges())
    expected = 0.5 * (torch.cos(edges[:-1]) - torch.cos(edges[1:])) / obs.bin_width_deg
    # Angles of triplets sharing atoms are correlated (the angles of a triangle sum to 180°), so the
    # standard error is taken from the spread of the i.i.d. frames (19 degrees of freedom).
    se = p.std(0) / math.sqrt(frames)
    z = (p.mean(0) - expected) / se
    assert float(z.abs().max()) < 5.0, z
    # Precision: the expected density is resolved to better than 2 % at the maximum.
    assert float(se.max()) < 0.02 * float(expected.max())
    # Smoothed: still a normalised density, equal to the plain one within the smoothing.
    smooth = AngularDistribution(("Ar", "Ar", "Ar"), r_max_A=4.5, r_min_A=1.0, n_bins=36).evaluate(traj)
    torch.testing.assert_close(smooth.sum(1) * obs.bin_width_deg, torch.ones(frames, dtype=torch.float64),
                               rtol=0, atol=1e-6)


def test_reflected_kernel_keeps_all_mass():
    angles = torch.tensor([0.0, 0.01, math.pi / 2, math.pi - 0.005, math.pi], dtype=torch.float64)
    h = reflected_gaussian_histogram(angles, torch.zeros(5, dtype=torch.long), 1, 90, math.radians(2.0))
    assert float(h.sum()) == pytest.approx(5.0, abs=1e-5)
    one = reflected_gaussian_histogram(angles[:1], torch.zeros(1, dtype=torch.long), 1, 90, math.radians(2.0))
    assert float(one[0, 0]) > 0.4  # the mass of θ = 0 is folded into the first bins, not lost


# ---------------------------------------------------------------------- errors
def test_bad_input_names_the_culprit():
    crystal = from_crystal(bulk("Ar", "fcc", a=5.26, cubic=True).repeat(3))  # half height 7.89 Å
    obs = AngularDistribution(("Ar", "Ar", "Ar"), r_max_A=9.0)
    message = r"adf_Ar_Ar_Ar_deg: r_max_A = 9 Å exceeds half the smallest cell height 7\.89"
    with pytest.raises(ValueError, match=message):
        obs.check(crystal)
    with pytest.raises(ValueError, match=r"7\.89"):
        obs.per_frame(crystal.as_state())
    with pytest.raises(ValueError, match="unknown element symbol: 'Xx'"):
        AngularDistribution(("Ar", "Xx", "Ar"), r_max_A=4.0)
    with pytest.raises(ValueError, match="species Ne is absent"):
        AngularDistribution(("Ne", "Ar", "Ar"), r_max_A=4.0).check(crystal)
    with pytest.raises(ValueError, match="frame 0 has no Ar–Ar–Ar triplet"):
        AngularDistribution(("Ar", "Ar", "Ar"), r_max_A=3.0).per_frame(crystal.as_state())  # shell empty
    with pytest.raises(ValueError, match="three element symbols"):
        AngularDistribution(("Ar", "Ar"), r_max_A=4.0)
    with pytest.raises(ValueError, match="angle_unit"):
        AngularDistribution(("Ar", "Ar", "Ar"), r_max_A=4.0, angle_unit="gradian")
    with pytest.raises(ValueError) as e:
        obs.check(crystal)
    assert "\n" not in str(e.value)
