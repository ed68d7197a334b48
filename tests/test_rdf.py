"""RadialDistribution: ideal-gas normalisation, crystal shells, partials, cell checks, reduction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase.build import bulk

from conftest import TRICLINIC, make_trajectory
from exprefine.observables import RadialDistribution
from exprefine.observables.rdf import smoothed_shell_volumes_A3
from exprefine.state import from_atoms
from exprefine.trajectory import Trajectory


def ideal_gas(n_atoms: int, n_frames: int, numbers: np.ndarray, seed: int = 0) -> Trajectory:
    rng = np.random.default_rng(seed)
    frac = rng.random((n_frames, n_atoms, 3))
    positions = frac @ TRICLINIC
    cells = np.repeat(TRICLINIC[None], n_frames, axis=0)
    return make_trajectory(positions, cells, numbers)


def crystal_trajectory(symbol_or_formula: str, structure: str, a_list: list[float], repeat: int) -> Trajectory:
    frames = [bulk(symbol_or_formula, structure, a=a, cubic=True).repeat(repeat) for a in a_list]
    positions = np.stack([f.get_positions() for f in frames])
    cells = np.stack([f.cell.array for f in frames])
    return make_trajectory(positions, cells, frames[0].get_atomic_numbers())


def shell_integral(obs: RadialDistribution, g: torch.Tensor, density_per_A3: float, lo: float, hi: float) -> float:
    """∫ ρ g(r) 4π r² dr over the bins whose centres lie in [lo, hi]."""
    edges = obs.bin_edges()
    shell = 4.0 * math.pi / 3.0 * (edges[1:] ** 3 - edges[:-1] ** 3)
    centres = obs.grid()
    inside = (centres >= lo) & (centres <= hi)
    return float(density_per_A3 * (g[inside] * shell[inside]).sum())


# ---------------------------------------------------------------- ideal gas
def _check_ideal(obs: RadialDistribution, traj: Trajectory, expected: float, pairs_per_frame_per_A3: float) -> None:
    """Per-bin and pooled z-scores against Poisson standard errors.

    The smoothed count of a bin is a sum of kernel weights w ∈ [0, 1] over pairs that are
    pairwise independent for uniform points, so Var ≤ E[count]: SE(ḡ_k) = expected / √E_k
    with E_k = n_frames · (pairs per volume) · V'_k (conservative).
    """
    g = obs.evaluate(traj)
    assert g.shape == (traj.n_frames, obs.n_bins)
    mean = g.mean(0)
    expected_counts = traj.n_frames * pairs_per_frame_per_A3 * smoothed_shell_volumes_A3(obs.bin_edges(), obs.smoothing_A)
    se = expected / expected_counts.sqrt()
    enough = expected_counts > 25.0
    assert int(enough.sum()) >= obs.n_bins - 3
    z = (mean - expected) / se
    assert float(z[enough].abs().max()) < 4.5, z
    pooled = float((mean * expected_counts).sum() / expected_counts.sum())
    pooled_se = expected / math.sqrt(float(expected_counts.sum()))
    assert abs(pooled - expected) < 4.0 * pooled_se, (pooled, expected, pooled_se)


def test_ideal_gas_total_is_one():
    n, frames = 400, 6
    traj = ideal_gas(n, frames, np.full(n, 18))
    volume = abs(np.linalg.det(TRICLINIC))
    obs = RadialDistribution(r_max_A=8.5, n_bins=34)
    assert obs.name == "rdf" and obs.unit == "1"
    # Σ_{i, j≠i} over N atoms: E[g] = (N − 1)/N with the V/(N·N) normalisation.
    _check_ideal(obs, traj, expected=(n - 1) / n, pairs_per_frame_per_A3=n * (n - 1) / 2 / volume)


def test_ideal_gas_binary_partial_is_one():
    n, frames = 400, 6
    rng = np.random.default_rng(1)
    numbers = np.where(rng.random(n) < 0.4, 10, 18)  # Ne, Ar
    n_ne, n_ar = int((numbers == 10).sum()), int((numbers == 18).sum())
    traj = ideal_gas(n, frames, numbers, seed=2)
    volume = abs(np.linalg.det(TRICLINIC))
    obs = RadialDistribution(r_max_A=8.5, bin_width_A=0.25, r_min_A=1.0, species=("Ne", "Ar"))
    assert obs.name == "rdf_Ne_Ar" and obs.n_bins == 30
    _check_ideal(obs, traj, expected=1.0, pairs_per_frame_per_A3=n_ne * n_ar / volume)
    # The same-species partial: E[g_aa] = (N_a − 1)/N_a.
    obs_aa = RadialDistribution(r_max_A=8.5, n_bins=30, r_min_A=1.0, species=("Ar", "Ar"))
    _check_ideal(obs_aa, traj, expected=(n_ar - 1) / n_ar, pairs_per_frame_per_A3=n_ar * (n_ar - 1) / 2 / volume)


def test_smoothed_shell_volume_limits():
    edges = torch.linspace(0.0, 10.0, 41, dtype=torch.float64)
    plain = 4.0 * math.pi / 3.0 * (edges[1:] ** 3 - edges[:-1] ** 3)
    torch.testing.assert_close(smoothed_shell_volumes_A3(edges, 0.0), plain)
    smooth = smoothed_shell_volumes_A3(edges, 0.1)
    # Far from r = 0 the smoothing adds 4π σ² Δr per bin (E[(x−ε)³] = x³ + 3xσ²).
    torch.testing.assert_close(smooth[10:], plain[10:] + 4.0 * math.pi * 0.01 * 0.25, rtol=1e-12, atol=1e-9)


# ------------------------------------------------------------------ crystal
def test_fcc_shells_positions_and_coordination():
    a = 5.26
    traj = crystal_trajectory("Ar", "fcc", [a], repeat=4)  # cube of 21.04 Å, 256 atoms
    obs = RadialDistribution(r_max_A=10.0, n_bins=400)  # Δ = σ = 0.025 Å
    g = obs.evaluate(traj)[0]
    rho = traj.n_atoms / float(traj.volumes_A3()[0])
    r = obs.grid()
    nn = a / math.sqrt(2.0)
    # Peaks at √2, √4, √6, ... × a/2 (= √n · a/√2, n = 1..7).
    for k in range(1, 8):
        expected = math.sqrt(2 * k) * a / 2
        window = (r > expected - 0.2) & (r < expected + 0.2)
        r_peak = float(r[window][torch.argmax(g[window])])
        assert abs(r_peak - expected) <= obs.bin_width_A, (k, r_peak, expected)
    # Centroid of the first peak and coordination numbers 12, 6, 24 of the first shells.
    first = (r > 3.0) & (r < 4.4)
    weights = g[first] * r[first] ** 2
    centroid = float((weights * r[first]).sum() / weights.sum())
    assert abs(centroid - nn) < 2e-3
    assert shell_integral(obs, g, rho, 3.0, 4.4) == pytest.approx(12.0, rel=2e-3)
    assert shell_integral(obs, g, rho, 4.6, 5.8) == pytest.approx(6.0, rel=2e-3)
    assert shell_integral(obs, g, rho, 5.9, 6.9) == pytest.approx(24.0, rel=2e-3)
    # Nothing between the shells (the kernel has decayed: gaps of ≫ 5σ).
    assert float(g[(r > 0.0) & (r < 3.4)].abs().max()) < 1e-8


def test_each_frame_uses_its_own_volume():
    lattice = [5.26, 5.50]
    traj = crystal_trajectory("Ar", "fcc", lattice, repeat=4)
    obs = RadialDistribution(r_max_A=10.0, n_bins=400)
    g = obs.per_frame(traj.as_state())
    r = obs.grid()
    for f, a in enumerate(lattice):
        rho = traj.n_atoms / float(traj.volumes_A3()[f])
        nn = a / math.sqrt(2.0)
        assert shell_integral(obs, g[f], rho, nn - 0.4, nn + 0.4) == pytest.approx(12.0, rel=2e-3)
        window = (r > nn - 0.3) & (r < nn + 0.3)
        peak = float(r[window][torch.argmax(g[f][window])])
        assert abs(peak - nn) <= obs.bin_width_A


def test_rocksalt_partials():
    a = 5.64
    traj = crystal_trajectory("NaCl", "rocksalt", [a], repeat=3)  # 16.92 Å cube, 108 Na + 108 Cl
    volume = float(traj.volumes_A3()[0])
    n_half = traj.n_atoms // 2
    unlike = RadialDistribution(r_max_A=8.0, n_bins=320, species=("Na", "Cl"))
    like = RadialDistribution(r_max_A=8.0, n_bins=320, species=("Na", "Na"))
    total = RadialDistribution(r_max_A=8.0, n_bins=320)
    g_nacl = unlike.evaluate(traj)[0]
    g_nana = like.evaluate(traj)[0]
    g_tot = total.evaluate(traj)[0]
    # Each Na has 6 Cl at a/2 and 12 Na at a/√2.
    assert shell_integral(unlike, g_nacl, n_half / volume, a / 2 - 0.4, a / 2 + 0.4) == pytest.approx(6.0, rel=2e-3)
    nn = a / math.sqrt(2.0)
    assert shell_integral(like, g_nana, n_half / volume, nn - 0.4, nn + 0.4) == pytest.approx(12.0, rel=2e-3)
    # With equal concentrations the total is the mean of the partials: (g_NaNa + g_ClCl + 2 g_NaCl)/4.
    g_clcl = RadialDistribution(r_max_A=8.0, n_bins=320, species=("Cl", "Cl")).evaluate(traj)[0]
    torch.testing.assert_close(g_tot, (g_nana + g_clcl + 2.0 * g_nacl) / 4.0)
    # Order of the species does not matter for g_ab.
    g_clna = RadialDistribution(r_max_A=8.0, n_bins=320, species=("Cl", "Na")).evaluate(traj)[0]
    torch.testing.assert_close(g_clna, g_nacl)


# ------------------------------------------------------------------- errors
def test_r_max_beyond_half_cell_is_refused():
    traj = crystal_trajectory("Ar", "fcc", [5.26], repeat=3)  # 15.78 Å cube: half height 7.89 Å
    obs = RadialDistribution(r_max_A=9.0, n_bins=90)
    with pytest.raises(ValueError, match=r"r_max_A = 9 Å.*7\.89 Å.*larger cell or a smaller r_max"):
        obs.check(traj)
    with pytest.raises(ValueError, match=r"7\.89"):
        obs.per_frame(traj.as_state())
    RadialDistribution(r_max_A=7.8, n_bins=78).check(traj)  # fits


def test_r_max_just_beyond_half_cell_counts_every_image():
    """Within the 1 % tolerance (an NPT cell dipping below 2·r_max) g(r) is exact: the same periodic
    system written as a 2×2×2 supercell (half height 15.78 Å, far above r_max) gives the same g(r)."""
    rng = np.random.default_rng(3)
    small = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(3)  # half height 7.89 Å
    small.positions += rng.normal(0.0, 0.15, small.positions.shape)
    big = small.repeat(2)
    obs = RadialDistribution(r_max_A=7.95, n_bins=159)  # 0.76 % beyond half the small cell's height
    g = [obs.per_frame(make_trajectory(a.get_positions()[None], a.cell.array[None],
                                       a.get_atomic_numbers()).as_state())[0] for a in (small, big)]
    assert float(g[0][-20:].sum()) > 0  # the last bins (beyond 7.89 Å) hold pairs
    torch.testing.assert_close(g[0], g[1], rtol=1e-10, atol=1e-10)


def test_absent_species_is_refused():
    traj = crystal_trajectory("Ar", "fcc", [5.26], repeat=3)
    obs = RadialDistribution(r_max_A=7.0, species=("Ar", "Ne"))
    with pytest.raises(ValueError, match=r"species Ne is absent.*Ar"):
        obs.check(traj)
    with pytest.raises(ValueError, match=r"species Ne is absent"):
        obs.per_frame(traj.as_state())


def test_constructor_errors():
    with pytest.raises(ValueError, match="either n_bins or bin_width_A"):
        RadialDistribution(5.0, n_bins=10, bin_width_A=0.5)
    with pytest.raises(ValueError, match="whole bins"):
        RadialDistribution(5.0, bin_width_A=0.3)
    with pytest.raises(ValueError, match="r_max_A"):
        RadialDistribution(1.0, r_min_A=2.0)
    with pytest.raises(ValueError, match="unknown element"):
        RadialDistribution(5.0, species=("Xx", "Ar"))


def test_grid_is_bin_centres():
    obs = RadialDistribution(r_max_A=6.0, n_bins=4, r_min_A=2.0)
    torch.testing.assert_close(obs.grid(), torch.tensor([2.5, 3.5, 4.5, 5.5], dtype=torch.float64))
    assert obs.smoothing_A == pytest.approx(1.0)
    assert obs.grid_label() == "r (Å)"


def test_histogram_without_smoothing_counts_pairs():
    # Two atoms 3.3 Å apart in a 20 Å cube: one pair, all of it in the bin holding 3.3 Å.
    state = from_atoms(_two_atoms(3.3))
    obs = RadialDistribution(r_max_A=5.0, n_bins=10, smoothing_A=0.0)
    g = obs.per_frame(state)[0]
    volume = 20.0**3
    shell = 4.0 * math.pi / 3.0 * (3.5**3 - 3.0**3)
    expected = torch.zeros(10, dtype=torch.float64)
    expected[6] = 2.0 * volume / (2 * 2) / shell
    torch.testing.assert_close(g, expected)


def _two_atoms(distance_A: float):
    from ase import Atoms

    return Atoms("Ar2", positions=[[1.0, 1.0, 1.0], [1.0 + distance_A, 1.0, 1.0]], cell=[20.0] * 3, pbc=True)


# ------------------------------------------------------------------- reduce
def test_reduce_uniform_and_concentrated_weights():
    n, frames = 100, 4
    traj = ideal_gas(n, frames, np.full(n, 18), seed=5)
    obs = RadialDistribution(r_max_A=8.0, n_bins=16)
    values = obs.evaluate(traj)
    uniform = torch.full((frames,), 1.0 / frames, dtype=torch.float64)
    torch.testing.assert_close(obs.reduce(values, uniform), values.mean(0))
    one_hot = torch.zeros(frames, dtype=torch.float64)
    one_hot[2] = 1.0
    torch.testing.assert_close(obs.reduce(values, one_hot), values[2])
    assert not torch.allclose(values[2], values.mean(0))


def test_thick_enough_is_the_cell_check_frame_by_frame():
    from exprefine.observables import CellTooSmall, thick_enough
    from exprefine.observables.base import check_cell_heights

    cells = torch.stack([torch.eye(3, dtype=torch.float64) * h for h in (12.0, 11.95, 11.8)])
    np.testing.assert_array_equal(thick_enough(6.0, cells).numpy(), [True, True, False])  # 11.95·1.01 ≥ 12
    check_cell_heights("g", 6.0, cells[:2])
    with pytest.raises(CellTooSmall, match="height 11.8"):
        check_cell_heights("g", 6.0, cells)
