"""Total scattering: Faber–Ziman weights, g(r) ↔ S(Q) transforms, direct S(Q), observables, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase.build import bulk
from scipy.special import wofz

from conftest import TRICLINIC, make_trajectory
from exprefine.observables import (
    PairDistributionFunction,
    RadialDistribution,
    StructureFactor,
    TotalRDF,
)
from exprefine.observables.rdf import smoothed_shell_volumes_A3
from exprefine.observables.scattering import (
    commensurate_q_vectors,
    differential_correlation_function,
    direct_structure_factor,
    faber_ziman_weights,
    neutron_scattering_length_fm,
    partial_rdfs,
    pdf_from_reduced_structure_factor,
    pdf_from_structure_factor,
    pdf_through_q_range,
    reduced_pdf,
    reduced_structure_factor,
    reduced_structure_factor_from_rdf,
    structure_factor_from_rdf,
    xray_form_factor,
)
from exprefine.state import from_atoms
from exprefine.trajectory import Trajectory


def ideal_gas(n_atoms: int, n_frames: int, numbers: np.ndarray, seed: int) -> Trajectory:
    frac = np.random.default_rng(seed).random((n_frames, n_atoms, 3))
    return make_trajectory(frac @ TRICLINIC, np.repeat(TRICLINIC[None], n_frames, axis=0), numbers)


def binary_numbers(n: int, seed: int) -> np.ndarray:
    """About 40 % C and 60 % N (b = 6.65 and 9.36 fm)."""
    return np.where(np.random.default_rng(seed).random(n) < 0.4, 6, 7)


# ------------------------------------------------------------------- weights
def test_faber_ziman_weights_closed_form_and_sum():
    w = faber_ziman_weights(["C", "N"], [3 / 7, 4 / 7], "neutron")
    b_c, b_n = neutron_scattering_length_fm("C"), neutron_scattering_length_fm("N")
    assert b_c == pytest.approx(6.646, abs=2e-3) and b_n == pytest.approx(9.36, abs=1e-2)  # SCIENCE.md
    c = torch.tensor([3 / 7, 4 / 7], dtype=torch.float64)
    b = torch.tensor([b_c, b_n], dtype=torch.float64)
    mean_b = float((c * b).sum())
    torch.testing.assert_close(w.weights, torch.outer(c * b, c * b) / mean_b**2, rtol=1e-14, atol=0)
    assert float(w.weights.sum()) == pytest.approx(1.0, abs=1e-14)
    assert float(w.mean_amplitude) == pytest.approx(mean_b, rel=1e-14)
    # The g-C3N4 numbers quoted in SCIENCE.md: CC 0.121, CN (both orders) 0.454, NN 0.426.
    assert float(w.weights[0, 0]) == pytest.approx(0.121, abs=1e-3)
    assert float(w.weights[0, 1] + w.weights[1, 0]) == pytest.approx(0.454, abs=1e-3)
    assert float(w.weights[1, 1]) == pytest.approx(0.426, abs=1e-3)
    # X-rays: Q-dependent, summing to 1 at every Q; at Q = 0 f ≈ Z, so the weights are ≈ Z-weights.
    q = torch.tensor([0.0, 1.0, 5.0, 20.0], dtype=torch.float64)
    wx = faber_ziman_weights(["Na", "Cl"], [0.5, 0.5], "xray", q)
    assert wx.weights.shape == (2, 2, 4)
    torch.testing.assert_close(wx.weights.sum((0, 1)), torch.ones(4, dtype=torch.float64), rtol=0, atol=1e-14)
    z = torch.tensor([11.0, 17.0], dtype=torch.float64)
    torch.testing.assert_close(wx.weights[..., 0], torch.outer(z, z) / z.sum() ** 2, rtol=0, atol=2e-3)
    assert not torch.allclose(wx.weights[..., 0], wx.weights[..., 3], atol=1e-3)  # form factors differ in shape
    # One species: a single weight 1.
    assert float(faber_ziman_weights(["Ar"], [1.0]).weights) == 1.0


def test_xray_form_factor_uses_Q_not_sin_theta_over_lambda():
    import xraydb

    # xraydb tabulates f0 against s = sin θ/λ = Q/4π.
    for s in (0.0, 0.25, 1.0):
        f = xray_form_factor("Ar", torch.tensor([4.0 * math.pi * s], dtype=torch.float64))
        assert float(f[0]) == pytest.approx(float(xraydb.f0("Ar", s)[0]), rel=1e-12)
    assert float(xray_form_factor(18, torch.zeros(1))[0]) == pytest.approx(18.0, abs=0.01)


# ------------------------------------------------------------------ transforms
# Test function: G(r) = C r exp(−r²/2s²), i.e. g(r) − 1 = C/(4πρ) exp(−r²/2s²), whose sine
# transform is F(Q) = C √(π/2) s³ Q exp(−Q²s²/2). Through a Q range [0, Q_max] with damping
# exp(−Q²δ²/2) the transform back has closed forms in terms of
#   I(k) = ∫_0^Qmax exp(−aQ²) cos(kQ) dQ = √π/(2√a) [e^{−k²/4a} − Re(e^{−aQm² − iQm k} w(iz))],
#   z = √a Qm + i k/(2√a), w the Faddeeva function (stable form of Re erf(z)), a = (s² + δ²)/2.
RHO = 0.02125
C_G = -1.5  # Å⁻²
S_G = 0.35  # Å: F(Q) is still ≈ 3 % of its peak at Q = 8 Å⁻¹, so Q_max = 8 truncates visibly


def gaussian_I(k: np.ndarray, a: float, q_max: float) -> np.ndarray:
    z = math.sqrt(a) * q_max + 1j * k / (2.0 * math.sqrt(a))
    tail = np.real(np.exp(-a * q_max**2 - 1j * q_max * k) * wofz(1j * z))
    return math.sqrt(math.pi) / (2.0 * math.sqrt(a)) * (np.exp(-k * k / (4.0 * a)) - tail)


def gaussian_terminated_G(r: np.ndarray, q_max: float, lorch: bool, delta: float) -> np.ndarray:
    a = 0.5 * (S_G**2 + delta**2)
    pref = (2.0 / math.pi) * C_G * math.sqrt(math.pi / 2.0) * S_G**3
    if lorch:  # Q M(Q) = (Q_max/π) sin(πQ/Q_max)
        shift = math.pi / q_max
        return pref * (q_max / math.pi) * 0.5 * (gaussian_I(r - shift, a, q_max) - gaussian_I(r + shift, a, q_max))
    # ∫_0^Qm Q e^{−aQ²} sin(Qr) dQ = −e^{−aQm²} sin(Qm r)/2a + (r/2a) I(r)
    j = -np.exp(-a * q_max**2) * np.sin(q_max * r) / (2.0 * a) + r / (2.0 * a) * gaussian_I(r, a, q_max)
    return pref * j


def test_gaussian_through_q_range_matches_closed_form():
    r = torch.linspace(0.0, 8.0, 1601, dtype=torch.float64)  # Δr = 0.005 Å; g − 1 < 1e-100 at 8 Å
    g = 1.0 + C_G / (4.0 * math.pi * RHO) * torch.exp(-(r**2) / (2.0 * S_G**2))
    G_exact = C_G * r * torch.exp(-(r**2) / (2.0 * S_G**2))
    torch.testing.assert_close(reduced_pdf(r, g, RHO), G_exact, rtol=0, atol=1e-13)
    # Forward transform against the analytic F(Q). Trapezoid error ≤ R Δr² max|f''|/12 with
    # f = r(g − 1) sin(Qr): ≈ 8 · 2.5e-5 · (Q² + 1/s²)·0.3/12 ≲ 2e-6 Å⁻¹ for Q ≤ 10.
    q = torch.linspace(0.05, 10.0, 200, dtype=torch.float64)
    F_exact = C_G * math.sqrt(math.pi / 2.0) * S_G**3 * q * torch.exp(-(q**2) * S_G**2 / 2.0)
    F_num = reduced_structure_factor_from_rdf(r, g, RHO, q)
    torch.testing.assert_close(F_num, F_exact, rtol=0, atol=2e-6)
    torch.testing.assert_close(structure_factor_from_rdf(r, g, RHO, q), 1.0 + F_exact / q, rtol=0, atol=4e-5)
    torch.testing.assert_close(reduced_structure_factor(q, 1.0 + F_exact / q), F_exact)

    r_out = torch.linspace(0.0, 6.0, 241, dtype=torch.float64)
    q_data = torch.linspace(0.0, 8.0, 1601, dtype=torch.float64)  # a "measured" F on ΔQ = 0.005 Å⁻¹
    F_data = C_G * math.sqrt(math.pi / 2.0) * S_G**3 * q_data * torch.exp(-(q_data**2) * S_G**2 / 2.0)
    g_out = 1.0 + C_G / (4.0 * math.pi * RHO) * torch.exp(-(r_out**2) / (2.0 * S_G**2))
    for lorch in (False, True):
        for delta in (0.0, 0.1):
            exact = torch.as_tensor(gaussian_terminated_G(r_out.numpy(), 8.0, lorch, delta))
            # Truncation visibly changes G: the test is not passed by the untruncated G(r).
            if not lorch and delta == 0.0:
                assert float((exact - C_G * r_out * torch.exp(-(r_out**2) / (2 * S_G**2))).abs().max()) > 5e-3
            # Inverse transform of the analytic F on the data grid (and through S(Q)).
            G_inv = pdf_from_reduced_structure_factor(q_data, F_data, r_out, lorch=lorch, q_damping_A=delta)
            torch.testing.assert_close(G_inv, exact, rtol=0, atol=1e-5)
            s_data = 1.0 + F_data[1:] / q_data[1:]
            G_s = pdf_from_structure_factor(q_data[1:], s_data, r_out, lorch=lorch, q_damping_A=delta)
            torch.testing.assert_close(G_s, exact, rtol=0, atol=1e-5)
            # The whole pipeline from a simulated g(r) on the same r points.
            G_pipe = pdf_through_q_range(r_out, g_out, RHO, q_max_inv_A=8.0, lorch=lorch, q_damping_A=delta)
            torch.testing.assert_close(G_pipe, exact, rtol=0, atol=2e-4)
    # Q_max between grid points: F is interpolated there; a longer grid cut at 8 gives the same G.
    q_long = torch.linspace(0.0, 9.0025, 1802, dtype=torch.float64)
    F_long = C_G * math.sqrt(math.pi / 2.0) * S_G**3 * q_long * torch.exp(-(q_long**2) * S_G**2 / 2.0)
    G_cut = pdf_from_reduced_structure_factor(q_long, F_long, r_out, q_max_inv_A=8.0, lorch=True)
    torch.testing.assert_close(G_cut, torch.as_tensor(gaussian_terminated_G(r_out.numpy(), 8.0, True, 0.0)),
                               rtol=0, atol=1e-5)


def test_r_window_is_lorch_in_r():
    # A g(r) that is still oscillating at R: the window is M(r) = sin(πr/R)/(πr/R), so the
    # windowed transform equals the plain transform of r(g − 1)M(r).
    r = torch.linspace(0.0, 10.0, 2001, dtype=torch.float64)
    g = 1.0 + torch.exp(-r / 4.0) * torch.sin(2.0 * r)
    q = torch.linspace(0.5, 8.0, 40, dtype=torch.float64)
    m = torch.sinc(r / 10.0)
    windowed = structure_factor_from_rdf(r, g, RHO, q, r_window="lorch")
    torch.testing.assert_close(windowed, structure_factor_from_rdf(r, 1.0 + (g - 1.0) * m, RHO, q), rtol=0, atol=1e-13)
    assert not torch.allclose(windowed, structure_factor_from_rdf(r, g, RHO, q), atol=1e-3)


def test_D_is_mean_b_squared_times_G_in_barn():
    r = torch.linspace(0.1, 5.0, 50, dtype=torch.float64)
    g = 1.0 + torch.sin(r) / r
    b = 7.0  # fm: ⟨b⟩² = 49 fm² = 0.49 barn
    torch.testing.assert_close(differential_correlation_function(r, g, RHO, b), 0.49 * reduced_pdf(r, g, RHO))


# ------------------------------------------------------------------ ideal gas
def test_ideal_gas_total_rdf_and_pdf():
    n, frames = 400, 6
    numbers = binary_numbers(n, 3)
    traj = ideal_gas(n, frames, numbers, seed=4)
    n_c, n_n = int((numbers == 6).sum()), int((numbers == 7).sum())
    w = faber_ziman_weights(["C", "N"], [n_c, n_n]).weights
    # E[g_ab] = 1 − δ_ab/N_a for an ideal gas in a periodic cell.
    expected = float(w.sum() - w[0, 0] / n_c - w[1, 1] / n_n)
    obs = TotalRDF(r_max_A=8.5, n_bins=34)
    assert obs.name == "total_rdf_neutron" and obs.unit == "1"
    g = obs.evaluate(traj)
    assert g.shape == (frames, 34)
    # Each unordered pair (j, k) adds u_jk = 2 b_j b_k V/(⟨b⟩² N² V'_k) times its kernel weight
    # (∈ [0, 1]) to bin k; pair terms are pairwise independent for uniform points, so
    # Var(g_k) ≤ Σ_pairs u_jk² P_k with P_k = V'_k/V.
    b = torch.tensor([neutron_scattering_length_fm(6) if z == 6 else neutron_scattering_length_fm(7) for z in numbers],
                     dtype=torch.float64)
    mean_b = float(b.mean())
    volume = abs(np.linalg.det(TRICLINIC))
    shell = smoothed_shell_volumes_A3(obs.binning.bin_edges(), obs.binning.smoothing_A)
    sum_b2b2 = 0.5 * (float((b**2).sum()) ** 2 - float((b**4).sum()))  # Σ_{j<k} b_j² b_k²
    var = sum_b2b2 * (2.0 * volume / (mean_b**2 * n**2 * shell)) ** 2 * shell / volume
    se = (var / frames).sqrt()
    z = (g.mean(0) - expected) / se
    assert float(z[4:].abs().max()) < 4.5, z  # the first bins hold a few pairs only
    # G(r) = 4πρ r (g − g∞) → 0 with the same errors scaled by 4πρ r.
    G = PairDistributionFunction(r_max_A=8.5, n_bins=34).evaluate(traj)
    r = obs.grid()
    torch.testing.assert_close(G, 4.0 * math.pi * (n / volume) * r * (g - expected), rtol=1e-12, atol=1e-12)


def test_ideal_gas_fourier_structure_factor_is_one():
    n, frames = 400, 16
    numbers = binary_numbers(n, 5)
    traj = ideal_gas(n, frames, numbers, seed=6)
    q = torch.linspace(1.0, 10.0, 37, dtype=torch.float64)
    obs = StructureFactor(q, r_max_A=8.5, bin_width_A=0.02, smoothing_A=0.0)
    s = obs.evaluate(traj)
    # Plain histogram: S − 1 = Σ_{j<k} (2 b_j b_k / ⟨b⟩² N) φ_Q(bin of d_jk) − const with
    # φ_Q,k = 4π t_k r_k sin(Q r_k)/(Q V_k), t_k the trapezoid weight of bin k; E[S] = 1 exactly,
    # and pairwise independence gives Var S = (4/⟨b⟩⁴N²) Σ_{j<k} b_j² b_k² Var_k φ_Q with
    # P(bin k) = V_k/V.
    edges = torch.linspace(0.0, 8.5, 426, dtype=torch.float64)
    r = 0.5 * (edges[1:] + edges[:-1])
    v_k = 4.0 * math.pi / 3.0 * (edges[1:] ** 3 - edges[:-1] ** 3)
    t_k = torch.full_like(r, 0.02)
    t_k[-1] = 0.01
    phi = 4.0 * math.pi * t_k[:, None] * r[:, None] * torch.sin(q[None, :] * r[:, None]) / (q[None, :] * v_k[:, None])
    volume = abs(np.linalg.det(TRICLINIC))
    p_k = (v_k / volume)[:, None]
    var_phi = (p_k * phi**2).sum(0) - ((p_k * phi).sum(0)) ** 2
    b = torch.tensor([neutron_scattering_length_fm(int(z)) for z in numbers], dtype=torch.float64)
    sum_b2b2 = 0.5 * (float((b**2).sum()) ** 2 - float((b**4).sum()))
    se = (4.0 * sum_b2b2 / (float(b.mean()) ** 4 * n**2) * var_phi / frames).sqrt()
    z = (s.mean(0) - 1.0) / se
    assert float(z.abs().max()) < 4.5, z
    assert float(se.max()) < 0.035  # the test has teeth: S = 1 to ±0.035 (Q = 1) … ±0.003 (Q = 10)
    # The derived variance is the frame-to-frame variance: their ratio, pooled over 37 Q
    # points of 15 degrees of freedom each, is 1 within ≈ 4·√(2/(37·15)) ≈ 0.25.
    ratio = float((s.var(0) / (se**2 * frames)).mean())
    assert abs(ratio - 1.0) < 0.25, ratio


def test_ideal_gas_direct_structure_factor_is_one():
    n, frames = 200, 4
    numbers = binary_numbers(n, 7)
    traj = ideal_gas(n, frames, numbers, seed=8)
    q = torch.linspace(0.6, 4.0, 18, dtype=torch.float64)
    obs = StructureFactor(q, direct=True)
    assert obs.name == "S_Q_neutron_direct"
    s = obs.evaluate(traj)
    _, n_vectors = direct_structure_factor(traj.as_state(), obs.q_bin_edges())
    # For uniform points and commensurate q ≠ 0: E|A|² = Σ b², Var|A|² = (Σ b²)² − Σ b⁴, and
    # distinct vectors (±q counted once) are uncorrelated: S = 1 ± √(Var/(N⟨b⟩²)² / M) per bin.
    b = torch.tensor([neutron_scattering_length_fm(int(z)) for z in numbers], dtype=torch.float64)
    var_s = (float((b**2).sum()) ** 2 - float((b**4).sum())) / (n * float(b.mean()) ** 2) ** 2
    se = (var_s / n_vectors.sum(0).to(torch.float64)).sqrt()
    z = (s.mean(0) - 1.0) / se
    assert float(z.abs().max()) < 4.5, z
    pooled_se = math.sqrt(var_s / float(n_vectors.sum()))
    pooled = float((s * n_vectors).sum() / n_vectors.sum())
    assert abs(pooled - 1.0) < 4.0 * pooled_se


# -------------------------------------------------------------------- crystal
def _bragg_check(atoms, q: torch.Tensor, n_atoms: int, primitive: np.ndarray) -> torch.Tensor:
    """Direct S of a perfect monatomic crystal: N at reciprocal-lattice vectors, 0 at all others,
    so each bin holds N × (Bragg vectors in it)/(vectors in it)."""
    state = from_atoms(atoms)
    obs = StructureFactor(q, direct=True)
    s = obs.per_frame(state)[0]
    edges = obs.q_bin_edges()
    vectors = commensurate_q_vectors(state.cell[0], float(edges[-1]))
    norms = vectors.norm(dim=1)
    n_index = vectors @ torch.as_tensor(primitive, dtype=torch.float64).T / (2.0 * math.pi)
    bragg = (n_index - n_index.round()).abs().max(dim=1).values < 1e-8
    bins = torch.bucketize(norms, edges, right=True) - 1
    inside = (bins >= 0) & (bins < q.numel())
    total = torch.bincount(bins[inside], minlength=q.numel()).to(torch.float64)
    hits = torch.bincount(bins[inside & bragg], minlength=q.numel()).to(torch.float64)
    torch.testing.assert_close(s, n_atoms * hits / total, rtol=1e-9, atol=1e-9)
    return s


def test_fcc_direct_bragg_peaks_cubic_and_triclinic():
    a = 5.26
    q111, q200 = 2.0 * math.pi * math.sqrt(3.0) / a, 4.0 * math.pi / a  # 2.069, 2.389 Å⁻¹
    q = torch.arange(1.6, 3.0, 0.1, dtype=torch.float64)
    primitive = bulk("Ar", "fcc", a=a).cell.array  # rows (0, a/2, a/2), ...
    cubic = bulk("Ar", "fcc", a=a, cubic=True).repeat(3)  # 108 atoms, 15.78 Å cube
    s = _bragg_check(cubic, q, 108, primitive)
    top = torch.argsort(s, descending=True)[:2].tolist()
    assert sorted(float(q[k]) for k in top) == pytest.approx([2.1, 2.4])  # bins holding |G_111|, |G_200|
    for q_peak in (q111, q200):
        k = int(torch.argmin((q - q_peak).abs()))
        assert abs(float(q[k]) - q_peak) <= 0.05 and float(s[k]) > 1.0
    # Triclinic: the primitive rhombohedral cell (60° between vectors) repeated 5×5×5.
    tric = bulk("Ar", "fcc", a=a).repeat(5)
    s_t = _bragg_check(tric, q, 125, primitive)
    k111, k200 = int(torch.argmin((q - q111).abs())), int(torch.argmin((q - q200).abs()))
    assert float(s_t[k111]) > 1.0 and float(s_t[k200]) > 1.0
    assert set(torch.nonzero(s_t > 1e-6).flatten().tolist()) == {k111, k200}
    # F(Q) = Q [S − 1] on the same bins.
    f = StructureFactor(q, direct=True, quantity="F").per_frame(from_atoms(tric))[0]
    torch.testing.assert_close(f, q * (s_t - 1.0))


def test_rocksalt_xray_direct_structure_factor_from_structure_amplitudes():
    # NaCl 3×3×3 (108 Na + 108 Cl): at a reciprocal-lattice vector G of the fcc lattice the
    # amplitude is 108 [f_Na(G) + f_Cl(G) e^{iG·τ}] with τ = (a/2, 0, 0), e^{iG·τ} = ±1 (+ for 200,
    # − for 111); at every other commensurate q it is 0. Faber–Ziman: S = 1 + (|A|²/N − ⟨f²⟩)/⟨f⟩²,
    # with the form factors at each |q| — the bins average these per-vector values.
    a = 5.64
    atoms = bulk("NaCl", "rocksalt", a=a, cubic=True).repeat(3)
    state = from_atoms(atoms)
    q = torch.arange(1.6, 3.6, 0.1, dtype=torch.float64)
    obs = StructureFactor(q, radiation="xray", direct=True)
    s = obs.per_frame(state)[0]
    edges = obs.q_bin_edges()
    vectors = commensurate_q_vectors(state.cell[0], float(edges[-1]))
    norms = vectors.norm(dim=1)
    primitive = torch.as_tensor(bulk("Na", "fcc", a=a).cell.array, dtype=torch.float64)
    n_index = vectors @ primitive.T / (2.0 * math.pi)
    bragg = (n_index - n_index.round()).abs().max(dim=1).values < 1e-8
    phase = torch.cos(vectors[:, 0] * a / 2.0)  # e^{iG·τ} = ±1 at Bragg vectors
    f_na, f_cl = xray_form_factor("Na", norms), xray_form_factor("Cl", norms)
    amplitude2 = torch.where(bragg, (108.0 * (f_na + f_cl * phase)) ** 2, torch.zeros_like(norms))
    mean_f, mean_f2 = 0.5 * (f_na + f_cl), 0.5 * (f_na**2 + f_cl**2)
    per_vector = 1.0 + (amplitude2 / 216.0 - mean_f2) / mean_f**2
    bins = torch.bucketize(norms, edges, right=True) - 1
    inside = (bins >= 0) & (bins < q.numel())
    expected = torch.zeros(q.numel(), dtype=torch.float64).index_add_(0, bins[inside], per_vector[inside])
    expected = expected / torch.bincount(bins[inside], minlength=q.numel())
    torch.testing.assert_close(s, expected, rtol=1e-10, atol=1e-10)
    # The 200 reflection (Na and Cl in phase, 2.23 Å⁻¹) is far stronger than 111 (1.93 Å⁻¹).
    k111 = int(torch.argmin((q - 2 * math.pi * math.sqrt(3) / a).abs()))
    k200 = int(torch.argmin((q - 4 * math.pi / a).abs()))
    assert float(s[k200]) > 5.0 * float(s[k111]) > 0.0
    # Neutron: b_Cl = 9.58 fm, b_Na = 3.63 fm have the same sign, so the order is the same.
    sn = StructureFactor(q, direct=True).per_frame(state)[0]
    assert float(sn[k200]) > float(sn[k111]) > 0.0


def test_total_rdf_is_weighted_partials_and_pdf_keeps_crystal_peaks():
    a = 5.64
    traj = make_trajectory(
        bulk("NaCl", "rocksalt", a=a, cubic=True).repeat(3).get_positions()[None],
        bulk("NaCl", "rocksalt", a=a, cubic=True).repeat(3).cell.array[None],
        bulk("NaCl", "rocksalt", a=a, cubic=True).repeat(3).get_atomic_numbers(),
    )
    kw = dict(r_max_A=8.0, n_bins=320)
    partial = {(x, y): RadialDistribution(**kw, species=(x, y)).evaluate(traj)[0]
               for x in ("Na", "Cl") for y in ("Na", "Cl")}
    for radiation in ("neutron", "xray"):
        w = faber_ziman_weights(["Na", "Cl"], [0.5, 0.5], radiation).weights
        pairs = [(i, x, j, y) for i, x in enumerate(("Na", "Cl")) for j, y in enumerate(("Na", "Cl"))]
        expected = sum(w[i, j] * partial[(x, y)] for i, x, j, y in pairs)
        torch.testing.assert_close(TotalRDF(**kw, radiation=radiation).evaluate(traj)[0], expected)
    # The neutron and X-ray totals differ (b_Cl/b_Na = 2.6, Z_Cl/Z_Na = 1.5).
    assert not torch.allclose(TotalRDF(**kw).evaluate(traj), TotalRDF(**kw, radiation="xray").evaluate(traj), atol=1e-2)
    # partial_rdfs holds the same partials, in order of Z.
    p = partial_rdfs(traj.as_state(), RadialDistribution(**kw))
    assert p.composition.symbols == ("Na", "Cl")
    torch.testing.assert_close(p.g[0, 0, 1], partial[("Na", "Cl")])
    torch.testing.assert_close(p.g[0, 1, 1], partial[("Cl", "Cl")])

    # G(r) through Q_max = 25 Å⁻¹ with a Lorch window: the first peak (Na–Cl at a/2) stays
    # at a/2 and keeps its area ∫G dr (the Lorch kernel is normalised), but broadens.
    plain = PairDistributionFunction(r_max_A=8.0, n_bins=400, smoothing_A=0.05).evaluate(traj)[0]
    lorch = PairDistributionFunction(r_max_A=8.0, n_bins=400, smoothing_A=0.05, q_max_inv_A=25.0,
                                     lorch=True).evaluate(traj)[0]
    r = PairDistributionFunction(r_max_A=8.0, n_bins=400).grid()
    window = (r > a / 2 - 0.6) & (r < a / 2 + 0.6)
    for G in (plain, lorch):
        peak = float(r[window][torch.argmax(G[window])])
        assert abs(peak - a / 2) <= 0.02
    assert float(lorch[window].sum()) == pytest.approx(float(plain[window].sum()), rel=1e-2)
    assert float(lorch[window].max()) < 0.9 * float(plain[window].max())
    # X-ray G(r) through the same Q range (Q-dependent weights): the Na–Cl peak stays at a/2.
    xray = PairDistributionFunction(r_max_A=8.0, n_bins=400, smoothing_A=0.05, radiation="xray", q_max_inv_A=25.0,
                                    lorch=True).evaluate(traj)[0]
    assert abs(float(r[window][torch.argmax(xray[window])]) - a / 2) <= 0.02


# -------------------------------------------------------------- LJ liquid
def test_direct_and_fourier_structure_factor_agree_on_lj_liquid(argon_108_trajectory):
    _, result = argon_108_trajectory
    traj = result.trajectory
    box = float(traj.cells_A[0, 0, 0])  # cubic NVT cell, 17.2 Å
    half = 0.5 * box
    q = torch.arange(4.125, 8.0, 0.25, dtype=torch.float64)  # bins [4, 4.25), …, [7.75, 8)
    direct_obs = StructureFactor(q, direct=True)
    direct = direct_obs.evaluate(traj)
    # The Fourier route at exactly the |q| of the commensurate vectors (2π/L)√m, averaged over
    # each bin with the multiplicities the direct route uses: no bias from curvature in a bin.
    edges = direct_obs.q_bin_edges()
    norms = commensurate_q_vectors(traj.cells_A[0], float(edges[-1])).norm(dim=1)
    norms = norms[norms >= float(edges[0])]
    q_exact, multiplicity = torch.unique(torch.round(norms, decimals=9), return_counts=True)
    fourier_exact = StructureFactor(q_exact, r_max_A=half, n_bins=round(half / 0.01)).evaluate(traj)
    bins = torch.bucketize(q_exact, edges, right=True) - 1
    weights = torch.zeros(q.numel(), q_exact.numel(), dtype=torch.float64)
    weights[bins, torch.arange(q_exact.numel())] = multiplicity.to(torch.float64)
    fourier = fourier_exact @ (weights / weights.sum(1, keepdim=True)).T
    diff = direct - fourier
    # Statistical error of the mean difference: frames are correlated, so 8 blocks of 5 frames.
    se = diff.reshape(8, 5, -1).mean(1).std(0) / math.sqrt(8)
    # Truncation of the Fourier route at R = L/2: 4πρ/Q ∫_R^∞ r h sin(Qr) dr ≈ 4πρ R |h(R)|/Q²
    # (the boundary term; the next is smaller by k/Q, k ≈ 2 Å⁻¹ the wavenumber of h), with |h|
    # near R measured on the simulation itself (0.25 Å bins over the last 1 Å).
    rdf = RadialDistribution(r_max_A=half, n_bins=round(half / 0.25))
    g = rdf.evaluate(traj).mean(0)
    h_tail = float((g[rdf.grid() > half - 1.0] - (1.0 - 1.0 / traj.n_atoms)).abs().max())
    rho = traj.n_atoms / box**3
    truncation = 4.0 * math.pi * rho * half * h_tail / q**2 * (1.0 + 2.0 / q)
    table = torch.stack([q, diff.mean(0), se, truncation], 1)
    assert not bool((diff.mean(0).abs() > 4.0 * se + truncation).any()), table
    assert float(truncation.max()) < 0.03 and float(se.max()) < 0.02, table  # the check is sharp


# ---------------------------------------------------------------------- errors
def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_bad_input_names_the_culprit():
    with pytest.raises(ValueError, match="Xx") as e:
        faber_ziman_weights(["Ar", "Xx"], [0.5, 0.5])
    _one_line(e)
    with pytest.raises(ValueError, match="neutron scattering length for Po"):
        neutron_scattering_length_fm("Po")  # periodictable has no b_c for Po
    with pytest.raises(ValueError, match="X-ray form factor for 'Es'"):
        faber_ziman_weights(["Es"], [1.0], "xray")  # xraydb covers H … Cf
    with pytest.raises(ValueError, match="radiation must be one of"):
        TotalRDF(r_max_A=5.0, radiation="electron")
    # Q ≤ 0 anywhere a Q grid is given.
    with pytest.raises(ValueError, match=r"q_inv_A must be finite and > 0: got 0 at index 0") as e:
        StructureFactor([0.0, 1.0, 2.0], r_max_A=5.0)
    _one_line(e)
    with pytest.raises(ValueError, match=r"got -1 at index 1"):
        StructureFactor([0.5, -1.0], direct=True)
    r = torch.linspace(0.0, 5.0, 11, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"q_inv_A must be finite and > 0: got 0 at index 2"):
        structure_factor_from_rdf(r, torch.ones(11, dtype=torch.float64), RHO, torch.tensor([1.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match=r"q_max_inv_A must lie in \(0, 8\]"):
        pdf_from_reduced_structure_factor(torch.linspace(0, 8, 9), torch.zeros(9), r, q_max_inv_A=9.0)
    # r_max beyond half the cell (15.78 Å cube: half height 7.89 Å), for every r-based observable.
    a = 5.26
    crystal = bulk("Ar", "fcc", a=a, cubic=True).repeat(3)
    traj = make_trajectory(crystal.get_positions()[None], crystal.cell.array[None], crystal.get_atomic_numbers())
    for obs in (TotalRDF(r_max_A=9.0), PairDistributionFunction(r_max_A=9.0),
                StructureFactor([1.0, 2.0], r_max_A=9.0)):
        with pytest.raises(ValueError, match=r"r_max_A = 9 Å exceeds half the smallest cell height 7\.89 Å") as e:
            obs.check(traj)
        assert _one_line(e).startswith(obs.name)
        with pytest.raises(ValueError, match=r"7\.89"):
            obs.per_frame(traj.as_state())
    # The direct route refuses bins below the smallest commensurate |q| = 2π/L = 0.398 Å⁻¹.
    message = r"no commensurate q vector .* bin \[0\.05, 0\.15\).*nearest \|q\| = 0\.3982"
    with pytest.raises(ValueError, match=message) as e:
        StructureFactor([0.1, 0.2, 0.3, 0.4], direct=True).per_frame(traj.as_state())
    _one_line(e)
    with pytest.raises(ValueError, match="needs r_max_A"):
        StructureFactor([1.0, 2.0])
    with pytest.raises(ValueError, match="lorch and q_damping_A need q_max_inv_A"):
        PairDistributionFunction(r_max_A=5.0, lorch=True)
