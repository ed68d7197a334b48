"""Total scattering: Faber–Ziman weights, the g(r) ↔ S(Q) transforms, and total-scattering observables.

Conventions (Faber–Ziman; Q = 4π sin θ / λ in Å⁻¹, r in Å, ρ0 = N/V the total number
density in Å⁻³, c_a = N_a/N):

    S(Q) − 1      = Σ_ab w_ab(Q) [S_ab(Q) − 1],   w_ab = c_a c_b b_a b_b / ⟨b⟩²,  ⟨b⟩ = Σ_a c_a b_a
    S_ab(Q) − 1   = 4πρ0/Q ∫_0^∞ r [g_ab(r) − 1] sin(Qr) dr
    g(r)          = Σ_ab w_ab g_ab(r)                        (total, Faber–Ziman weighted)
    F(Q)          = Q [S(Q) − 1]                              (Å⁻¹)
    G(r)          = 4πρ0 r [g(r) − 1] = (2/π) ∫_0^∞ F(Q) sin(Qr) dQ     (Å⁻²)
    D(r)          = ⟨b⟩² G(r)                                 (barn Å⁻², b in fm, 1 barn = 100 fm²)

The sums run over ordered pairs (a, b), so Σ_ab w_ab = 1 and a ≠ b appears twice.
For neutrons b_a is the bound coherent scattering length (``periodictable``); for
X-rays b_a is replaced by the atomic form factor f_a(Q) (``xraydb``, Waasmaier–Kirfel),
which makes the weights Q-dependent. In r-space (total g(r), G(r) without a Q range)
the X-ray weights are taken at Q = 0, where f_a(0) ≈ Z_a.

Finite periodic cells. A partial g_ab normalised by N_a N_b (as :class:`RadialDistribution`
does) tends to g∞_ab = 1 − δ_ab / N_a, not to 1. The transforms here use
h_ab = g_ab − g∞_ab: the O(1/N) tail then cancels between the sphere r < R and the
corners of the cell, and the Fourier route agrees with the direct lattice sum
S(q) = 1 + [|Σ_j b_j e^{iq·r_j}|²/N − ⟨b²⟩]/⟨b⟩² on the cell's commensurate q vectors
q = n · 2π (cell⁻¹)ᵀ (cell rows are lattice vectors). The Fourier route from a g(r)
known up to R = half a cell height resolves Q no finer than ≈ π/R and rings below
≈ 2π/R; the direct route is exact at any commensurate q but is averaged over the few
vectors that fall into each Q bin.

All tensors are float64; functions are batched over leading dimensions.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..neighbors import build_pairs
from ..potentials.base import Potential, atomic_number, element_symbols
from ..state import State
from ..trajectory import Trajectory
from .base import Observable
from .binning import RadialBinning, RadialObservable
from .rdf import RadialDistribution

#: Radiations with tabulated scattering amplitudes.
RADIATIONS = ("neutron", "xray")

#: r-side windows of :func:`reduced_structure_factor_from_rdf`.
R_WINDOWS = (None, "lorch")

#: Q points per period π/R of the fastest oscillation in :func:`pdf_through_q_range`.
Q_POINTS_PER_PERIOD = 20

#: Largest number of atom × q-vector phases held at once by the direct lattice sum.
DIRECT_CHUNK_ELEMENTS = 1 << 21


# ============================================================ scattering amplitudes
@functools.lru_cache(maxsize=None)
def neutron_scattering_length_fm(element: str | int) -> float:
    """Bound coherent neutron scattering length b_c of the natural element, fm (periodictable).

    Raises:
        ValueError: unknown element, or no coherent length tabulated for it.
    """
    import periodictable

    z = atomic_number(element)
    if not 1 <= z <= 118:
        raise ValueError(f"unknown element: {element!r}")
    el = periodictable.elements[z]
    b = el.neutron.b_c
    if b is None:
        raise ValueError(f"periodictable has no coherent neutron scattering length for {el.symbol}")
    return float(b)


def xray_form_factor(element: str | int, q_inv_A: torch.Tensor) -> torch.Tensor:
    """[*q.shape] atomic X-ray form factor f0(Q) of the neutral atom, electrons (xraydb).

    Args:
        element: symbol or atomic number (H … Cf).
        q_inv_A: momentum transfer Q = 4π sin θ/λ in Å⁻¹ (xraydb's s = sin θ/λ = Q/4π).
    """
    import xraydb

    z = atomic_number(element)
    symbol = element_symbols([z])[0] if 0 < z < 119 else str(element)
    q = torch.as_tensor(q_inv_A, dtype=torch.float64)
    try:
        f = xraydb.f0(symbol, (q.detach().cpu().numpy() / (4.0 * math.pi)).reshape(-1))
    except ValueError as exc:
        raise ValueError(f"xraydb has no X-ray form factor for {symbol!r}") from exc
    return torch.as_tensor(np.asarray(f, dtype=np.float64), device=q.device).reshape(q.shape)


def scattering_amplitudes(
    symbols: Sequence[str], radiation: str, q_inv_A: torch.Tensor | None = None
) -> torch.Tensor:
    """Scattering amplitude of each species: [n_species] for neutrons or X-rays at Q = 0
    when ``q_inv_A`` is None, else [n_species, n_q].

    Units: fm for neutrons (b_c), electrons for X-rays (f0).
    """
    _check_radiation(radiation)
    if radiation == "neutron":
        b = torch.tensor([neutron_scattering_length_fm(s) for s in symbols], dtype=torch.float64)
        if q_inv_A is None:
            return b
        q = torch.as_tensor(q_inv_A, dtype=torch.float64)
        return b[:, None].expand(len(symbols), q.shape[-1]).clone()
    q = torch.zeros(1, dtype=torch.float64) if q_inv_A is None else torch.as_tensor(q_inv_A, dtype=torch.float64)
    f = torch.stack([xray_form_factor(s, q) for s in symbols])
    return f[:, 0] if q_inv_A is None else f


# ================================================================= composition
@dataclass(frozen=True)
class Composition:
    """Species of one system in order of atomic number.

    Attributes:
        symbols: element symbols, e.g. ("C", "N").
        atomic_numbers: their atomic numbers.
        counts: number of atoms of each species.
    """

    symbols: tuple[str, ...]
    atomic_numbers: tuple[int, ...]
    counts: tuple[int, ...]

    @property
    def n_atoms(self) -> int:
        return int(sum(self.counts))

    @property
    def concentrations(self) -> torch.Tensor:
        """[n_species] atomic fractions c_a = N_a / N (float64)."""
        return torch.tensor(self.counts, dtype=torch.float64) / self.n_atoms


def composition_of(frames: State) -> Composition:
    """Composition shared by every system of ``frames``; ValueError if the systems differ."""
    z = frames.atomic_numbers
    species = torch.unique(z)
    types = torch.searchsorted(species, z)
    counts = torch.zeros(frames.n_systems, len(species), dtype=torch.long, device=z.device)
    counts.index_put_((frames.system_idx, types), torch.ones_like(z), accumulate=True)
    if bool((counts != counts[0]).any()):
        raise ValueError("frames with different compositions cannot share one scattering observable")
    numbers = tuple(int(v) for v in species.tolist())
    return Composition(tuple(element_symbols(numbers)), numbers, tuple(int(v) for v in counts[0].tolist()))


@dataclass(frozen=True)
class FaberZimanWeights:
    """Faber–Ziman weights of the ordered species pairs.

    Attributes:
        symbols: species order of every axis.
        radiation: "neutron" or "xray".
        concentrations: [n_s] atomic fractions c_a.
        amplitudes: [n_s] or [n_s, n_q] scattering amplitudes b_a (fm) or f_a(Q) (electrons).
        mean_amplitude: [] or [n_q] ⟨b⟩ = Σ c_a b_a.
        mean_square_amplitude: [] or [n_q] ⟨b²⟩ = Σ c_a b_a².
        weights: [n_s, n_s] or [n_s, n_s, n_q] w_ab = c_a c_b b_a b_b / ⟨b⟩², Σ_ab w_ab = 1.
    """

    symbols: tuple[str, ...]
    radiation: str
    concentrations: torch.Tensor
    amplitudes: torch.Tensor
    mean_amplitude: torch.Tensor
    mean_square_amplitude: torch.Tensor
    weights: torch.Tensor


def faber_ziman_weights(
    symbols: Sequence[str],
    concentrations: Sequence[float] | torch.Tensor,
    radiation: str = "neutron",
    q_inv_A: torch.Tensor | None = None,
) -> FaberZimanWeights:
    """Faber–Ziman weights from a composition.

    Args:
        symbols: [n_s] element symbols.
        concentrations: [n_s] atomic fractions (normalised here to sum to 1).
        radiation: "neutron" (coherent b_c) or "xray" (form factors f0(Q)).
        q_inv_A: [n_q] Q grid in Å⁻¹ for Q-dependent weights; None gives [n_s, n_s] weights
            (X-rays then at Q = 0).

    Raises:
        ValueError: unknown element, missing table entry, bad concentrations, or ⟨b⟩ = 0.
    """
    symbols = tuple(element_symbols([atomic_number(s)])[0] for s in symbols)
    c = torch.as_tensor(concentrations, dtype=torch.float64).reshape(-1)
    if c.shape[0] != len(symbols):
        raise ValueError(f"got {len(symbols)} symbols but {c.shape[0]} concentrations")
    if not bool(torch.isfinite(c).all()) or bool((c < 0).any()) or float(c.sum()) <= 0:
        raise ValueError(f"concentrations must be finite, ≥ 0 and not all zero, got {c.tolist()}")
    c = c / c.sum()
    b = scattering_amplitudes(symbols, radiation, q_inv_A)  # [n_s] or [n_s, n_q]
    cb = c.reshape((-1,) + (1,) * (b.ndim - 1)) * b
    mean_b = cb.sum(0)
    mean_b2 = (cb * b).sum(0)
    if bool((mean_b.abs() <= 1e-12 * mean_b2.sqrt()).any()):
        raise ValueError(
            f"the mean {radiation} scattering amplitude of {'-'.join(symbols)} is zero: "
            "Faber–Ziman weights are undefined"
        )
    weights = cb[:, None] * cb[None, :] / mean_b**2
    return FaberZimanWeights(symbols, radiation, c, b, mean_b, mean_b2, weights)


# ================================================================== transforms
def lorch_window(x: torch.Tensor, x_max: float) -> torch.Tensor:
    """Lorch modification function sin(πx/x_max)/(πx/x_max), 1 at x = 0 and 0 at x_max."""
    return torch.sinc(torch.as_tensor(x, dtype=torch.float64) / float(x_max))


def _trapezoid_weights_from_zero(x: torch.Tensor) -> torch.Tensor:
    """[n] trapezoid weights on [0, x_{n−1}] for an integrand that vanishes at 0.

    If x_0 > 0 a point (0, 0) is prepended; its weight is dropped because the
    integrand is zero there.
    """
    x = x.to(torch.float64)
    padded = torch.cat([x.new_zeros(1), x]) if float(x[0]) > 0.0 else x
    gaps = padded[1:] - padded[:-1]
    w = torch.zeros_like(padded)
    w[:-1] += 0.5 * gaps
    w[1:] += 0.5 * gaps
    return w[1:] if padded.shape[0] > x.shape[0] else w


def _check_grid(x: torch.Tensor, name: str, positive: bool) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=torch.float64)
    if x.ndim != 1 or x.shape[0] < 2:
        raise ValueError(f"{name} must be a 1-D grid of at least 2 points, got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} holds non-finite values")
    bad = (x <= 0) if positive else (x < 0)
    if bool(bad.any()):
        k = int(torch.nonzero(bad)[0])
        relation = "> 0" if positive else "≥ 0"
        raise ValueError(f"{name} must be {relation}: got {float(x[k]):g} at index {k}")
    if bool((x[1:] <= x[:-1]).any()):
        raise ValueError(f"{name} must be strictly increasing")
    return x


def _check_positive(x: torch.Tensor | Sequence[float], name: str) -> torch.Tensor:
    """x as a float64 1-D tensor; one-line ValueError naming the first value that is not finite and > 0."""
    x = torch.as_tensor(x, dtype=torch.float64).reshape(-1)
    bad = ~(torch.isfinite(x) & (x > 0))
    if bool(bad.any()):
        k = int(torch.nonzero(bad)[0])
        raise ValueError(f"{name} must be finite and > 0: got {float(x[k]):g} at index {k}")
    return x


def _as_batch(value: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A scalar or a tensor of the batch shape of ``like`` ([..., n]) broadcast as [..., 1]."""
    t = torch.as_tensor(value, dtype=torch.float64, device=like.device)
    return t.unsqueeze(-1) if t.ndim else t


def reduced_structure_factor_from_rdf(
    r_A: torch.Tensor,
    g: torch.Tensor,
    density_per_A3: float | torch.Tensor,
    q_inv_A: torch.Tensor,
    *,
    g_inf: float | torch.Tensor = 1.0,
    r_window: str | None = None,
) -> torch.Tensor:
    """F(Q) = Q[S(Q) − 1] = 4πρ0 ∫_0^R r [g(r) − g∞] M(r) sin(Qr) dr, Å⁻¹.

    Trapezoid rule on the given r points from r = 0 (the integrand vanishes there)
    to R = r_A[-1]. Valid also at Q = 0 (F = 0).

    Args:
        r_A: [n_r] increasing r ≥ 0, Å.
        g: [..., n_r] g(r).
        density_per_A3: ρ0, a float or a tensor of the batch shape [...].
        q_inv_A: [n_q] Q ≥ 0, Å⁻¹.
        g_inf: large-r limit of g (1, or 1 − δ_ab/N_a for a partial of a periodic cell);
            float or batch-shaped tensor.
        r_window: None, or "lorch" for M(r) = sin(πr/R)/(πr/R), which damps the
            termination ripples of a truncated g(r) at the cost of broader peaks in Q.

    Returns:
        [..., n_q] F(Q) in Å⁻¹ (float64).
    """
    r = _check_grid(r_A, "r_A", positive=False)
    q = torch.as_tensor(q_inv_A, dtype=torch.float64)
    if r_window not in R_WINDOWS:
        raise ValueError(f"r_window must be one of {R_WINDOWS}, got {r_window!r}")
    g = torch.as_tensor(g, dtype=torch.float64)
    if g.shape[-1] != r.shape[0]:
        raise ValueError(f"g has {g.shape[-1]} points along r but r_A has {r.shape[0]}")
    integrand = r * (g - _as_batch(g_inf, g))
    if r_window == "lorch":
        integrand = integrand * lorch_window(r, float(r[-1]))
    kernel = torch.sin(r[:, None] * q[None, :]) * _trapezoid_weights_from_zero(r)[:, None]  # [n_r, n_q]
    return 4.0 * math.pi * _as_batch(density_per_A3, g) * (integrand @ kernel)


def structure_factor_from_rdf(
    r_A: torch.Tensor,
    g: torch.Tensor,
    density_per_A3: float | torch.Tensor,
    q_inv_A: torch.Tensor,
    *,
    g_inf: float | torch.Tensor = 1.0,
    r_window: str | None = None,
) -> torch.Tensor:
    """S(Q) = 1 + 4πρ0/Q ∫_0^R r [g(r) − g∞] M(r) sin(Qr) dr, dimensionless, [..., n_q].

    Arguments as :func:`reduced_structure_factor_from_rdf`; Q must be > 0.
    """
    q = _check_positive(q_inv_A, "q_inv_A")
    f = reduced_structure_factor_from_rdf(r_A, g, density_per_A3, q, g_inf=g_inf, r_window=r_window)
    return 1.0 + f / q


def reduced_structure_factor(q_inv_A: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """F(Q) = Q [S(Q) − 1], Å⁻¹.  q_inv_A: [n_q] Å⁻¹; s: [..., n_q]."""
    q = torch.as_tensor(q_inv_A, dtype=torch.float64)
    return q * (torch.as_tensor(s, dtype=torch.float64) - 1.0)


def reduced_pdf(
    r_A: torch.Tensor, g: torch.Tensor, density_per_A3: float | torch.Tensor, *, g_inf: float | torch.Tensor = 1.0
) -> torch.Tensor:
    """G(r) = 4πρ0 r [g(r) − g∞], Å⁻².  r_A: [n_r] Å; g: [..., n_r]; ρ0 scalar or [...]."""
    r = torch.as_tensor(r_A, dtype=torch.float64)
    g = torch.as_tensor(g, dtype=torch.float64)
    return 4.0 * math.pi * _as_batch(density_per_A3, g) * r * (g - _as_batch(g_inf, g))


def differential_correlation_function(
    r_A: torch.Tensor,
    g: torch.Tensor,
    density_per_A3: float | torch.Tensor,
    mean_scattering_length_fm: float | torch.Tensor,
    *,
    g_inf: float | torch.Tensor = 1.0,
) -> torch.Tensor:
    """D(r) = ⟨b⟩² G(r) = 4πρ0 r ⟨b⟩² [g(r) − g∞] in barn Å⁻² (⟨b⟩ in fm; 1 barn = 100 fm²).

    g is the Faber–Ziman total g(r) (weights normalised by ⟨b⟩²), so ⟨b⟩² restores the
    absolute scale in which neutron groups often publish D(r).
    """
    b2_barn = torch.as_tensor(mean_scattering_length_fm, dtype=torch.float64) ** 2 / 100.0
    return reduced_pdf(r_A, g, density_per_A3, g_inf=g_inf) * _as_batch(b2_barn, torch.as_tensor(g))


def _interp_last(x: torch.Tensor, y: torch.Tensor, x0: float) -> torch.Tensor:
    """[...] linear interpolation of y [..., n] at x0 within the increasing grid x [n]."""
    k = int(torch.searchsorted(x, torch.tensor([x0], dtype=x.dtype)).clamp(1, x.shape[0] - 1))
    t = (x0 - float(x[k - 1])) / float(x[k] - x[k - 1])
    return (1.0 - t) * y[..., k - 1] + t * y[..., k]


def pdf_from_reduced_structure_factor(
    q_inv_A: torch.Tensor,
    f: torch.Tensor,
    r_A: torch.Tensor,
    *,
    q_max_inv_A: float | None = None,
    lorch: bool = False,
    q_damping_A: float = 0.0,
) -> torch.Tensor:
    """G(r) = (2/π) ∫_0^{Q_max} F(Q) M(Q) exp(−Q²δ²/2) sin(Qr) dQ, Å⁻².

    The Q_max termination convolves G(r) with sin(Q_max r)/πr-like ripples; the Lorch
    window M(Q) = sin(πQ/Q_max)/(πQ/Q_max) trades them for a broader kernel; the
    damping exp(−Q²δ²/2) convolves G(r) with a Gaussian of width δ (Å). Apply the
    same settings to a simulated curve as were used to reduce the data.

    Trapezoid rule on the given Q points from Q = 0 (F(0) = 0); if Q_max lies between
    grid points F is interpolated linearly there.

    Args:
        q_inv_A: [n_q] increasing Q ≥ 0, Å⁻¹.
        f: [..., n_q] F(Q) = Q[S(Q) − 1], Å⁻¹.
        r_A: [n_r] r, Å.
        q_max_inv_A: upper limit of the integral; default the last Q point.
        lorch: apply the Lorch window.
        q_damping_A: δ ≥ 0 in Å.

    Returns:
        [..., n_r] G(r) in Å⁻² (float64).
    """
    q = _check_grid(q_inv_A, "q_inv_A", positive=False)
    f = torch.as_tensor(f, dtype=torch.float64)
    r = torch.as_tensor(r_A, dtype=torch.float64)
    if f.shape[-1] != q.shape[0]:
        raise ValueError(f"F has {f.shape[-1]} points along Q but q_inv_A has {q.shape[0]}")
    q_top = float(q[-1])
    q_max = q_top if q_max_inv_A is None else float(q_max_inv_A)
    if not (math.isfinite(q_max) and 0.0 < q_max <= q_top * (1 + 1e-12)):
        raise ValueError(f"q_max_inv_A must lie in (0, {q_top:g}] Å⁻¹ (the Q grid), got {q_max:g}")
    if not (math.isfinite(q_damping_A) and q_damping_A >= 0.0):
        raise ValueError(f"q_damping_A must be ≥ 0 Å, got {q_damping_A}")
    inside = q < q_max * (1 - 1e-12)
    q_used = torch.cat([q[inside], q.new_tensor([q_max])])
    f_used = torch.cat([f[..., inside], _interp_last(q, f, q_max).unsqueeze(-1)], dim=-1)
    modulation = torch.exp(-0.5 * (q_used * q_damping_A) ** 2)
    if lorch:
        modulation = modulation * lorch_window(q_used, q_max)
    kernel = torch.sin(q_used[:, None] * r[None, :]) * (_trapezoid_weights_from_zero(q_used) * modulation)[:, None]
    return (2.0 / math.pi) * (f_used @ kernel)


def pdf_from_structure_factor(
    q_inv_A: torch.Tensor,
    s: torch.Tensor,
    r_A: torch.Tensor,
    *,
    q_max_inv_A: float | None = None,
    lorch: bool = False,
    q_damping_A: float = 0.0,
) -> torch.Tensor:
    """[..., n_r] G(r) in Å⁻² from S(Q) [..., n_q]; see :func:`pdf_from_reduced_structure_factor`."""
    return pdf_from_reduced_structure_factor(
        q_inv_A, reduced_structure_factor(q_inv_A, s), r_A,
        q_max_inv_A=q_max_inv_A, lorch=lorch, q_damping_A=q_damping_A,
    )


def q_range_grid(r_extent_A: float, q_max_inv_A: float) -> torch.Tensor:
    """Uniform Q grid on [0, Q_max] fine enough for sine transforms of functions of r ≤ r_extent.

    The step is π / (Q_POINTS_PER_PERIOD · 2 r_extent): products sin(Qr) sin(Qr') with
    r, r' ≤ r_extent oscillate with period ≥ π / r_extent in Q.
    """
    if not (math.isfinite(q_max_inv_A) and q_max_inv_A > 0):
        raise ValueError(f"q_max_inv_A must be > 0 Å⁻¹, got {q_max_inv_A}")
    step = math.pi / (Q_POINTS_PER_PERIOD * 2.0 * r_extent_A)
    n = max(2, int(math.ceil(q_max_inv_A / step)))
    return torch.linspace(0.0, float(q_max_inv_A), n + 1, dtype=torch.float64)


def pdf_through_q_range(
    r_A: torch.Tensor,
    g: torch.Tensor,
    density_per_A3: float | torch.Tensor,
    *,
    q_max_inv_A: float,
    lorch: bool = False,
    q_damping_A: float = 0.0,
    g_inf: float | torch.Tensor = 1.0,
) -> torch.Tensor:
    """G(r) of a simulated g(r) sent through the data's Q range: g → F(Q) on [0, Q_max] → G(r).

    Equivalent to convolving 4πρ0 r [g − g∞] with the termination (and Lorch, damping)
    kernel of the experiment. r_A must start at or near 0 (the transform integrates
    from 0); output on the same r points, Å⁻².

    Args:
        r_A: [n_r] Å; g: [..., n_r]; density_per_A3: scalar or [...]; g_inf: scalar or [...].
        q_max_inv_A, lorch, q_damping_A: as in :func:`pdf_from_reduced_structure_factor`.
    """
    r = _check_grid(r_A, "r_A", positive=False)
    q = q_range_grid(float(r[-1]), q_max_inv_A)
    f = reduced_structure_factor_from_rdf(r, g, density_per_A3, q, g_inf=g_inf)
    return pdf_from_reduced_structure_factor(q, f, r, lorch=lorch, q_damping_A=q_damping_A)


# ============================================================ partials from frames
@dataclass
class PartialRDFs:
    """All partial g_ab(r) of a batch of frames, from one pair list.

    Attributes:
        r_A: [n_bins] bin centres, Å.
        g: [n_frames, n_s, n_s, n_bins] g_ab(r), symmetric in (a, b), normalised by N_a N_b
            exactly as :class:`RadialDistribution`.
        g_inf: [n_s, n_s] ideal-gas limit 1 − δ_ab / N_a of each partial.
        density_per_A3: [n_frames] total number density ρ0 = N/V of each frame.
        composition: species order of the axes.
    """

    r_A: torch.Tensor
    g: torch.Tensor
    g_inf: torch.Tensor
    density_per_A3: torch.Tensor
    composition: Composition


def partial_rdfs(frames: State, binning: RadialBinning | RadialDistribution) -> PartialRDFs:
    """Every partial g_ab(r) on the bins (and smoothing) of ``binning``, frames in float64.

    ``binning`` supplies the r grid, the Gaussian kernel and the cell check (r_max ≤ half
    the smallest cell height); a :class:`RadialDistribution` lends its binning (its species
    are ignored).
    """
    if isinstance(binning, RadialDistribution):
        binning = binning.binning
    frames = frames.to(torch.float64)
    binning.check_cells(frames.cell, frames.pbc)
    comp = composition_of(frames)
    n_s = len(comp.symbols)
    n_frames = frames.n_systems
    species = torch.tensor(comp.atomic_numbers, device=frames.device)
    types = torch.searchsorted(species, frames.atomic_numbers)
    pairs = build_pairs(frames, binning.pair_cutoff_A)
    ta, tb = types[pairs.i], types[pairs.j]
    lo, hi = torch.minimum(ta, tb), torch.maximum(ta, tb)
    dist = pairs.vectors(frames.positions, frames.cell).norm(dim=-1)
    group = (pairs.system * n_s + lo) * n_s + hi
    counts = binning.smoothed_counts(dist, group, n_frames * n_s * n_s).view(n_frames, n_s, n_s, -1)
    # A half list holds each unordered pair once: Σ_{i∈a, j∈b, j≠i} counts it twice when a = b.
    counts = counts + counts.transpose(1, 2)  # a < b filled both ways; a = b doubled
    n = torch.tensor(comp.counts, dtype=torch.float64, device=frames.device)
    volume = frames.volume_A3()
    ideal = binning.ideal_shell_volumes_A3.to(device=frames.device)
    g = counts * volume[:, None, None, None] / (n[:, None] * n[None, :])[None, :, :, None] / ideal
    g_inf = 1.0 - torch.diag(1.0 / n)
    return PartialRDFs(binning.grid().to(frames.device), g, g_inf, comp.n_atoms / volume, comp)


# ================================================================ direct route
def commensurate_q_vectors(cell_A: torch.Tensor, q_max_inv_A: float) -> torch.Tensor:
    """[M, 3] q = n · 2π (cell⁻¹)ᵀ with 0 < |q| ≤ Q_max, one of each ±q pair, Å⁻¹.

    Args:
        cell_A: [3, 3] lattice vectors as rows, Å (any triclinic cell).
        q_max_inv_A: largest |q|, Å⁻¹.
    """
    cell = torch.as_tensor(cell_A, dtype=torch.float64)
    recip = 2.0 * math.pi * torch.linalg.inv(cell).T  # rows b_j with a_i · b_j = 2π δ_ij
    # n_i = q · a_i / 2π, so |n_i| ≤ Q_max |a_i| / 2π.
    n_max = [int(math.floor(q_max_inv_A * float(cell[i].norm()) / (2.0 * math.pi))) for i in range(3)]
    axes = [torch.arange(-m, m + 1, dtype=torch.float64, device=cell.device) for m in n_max]
    n = torch.cartesian_prod(*axes).reshape(-1, 3)
    half = (n[:, 0] > 0) | ((n[:, 0] == 0) & (n[:, 1] > 0)) | ((n[:, 0] == 0) & (n[:, 1] == 0) & (n[:, 2] > 0))
    q = n[half] @ recip
    return q[q.norm(dim=1) <= q_max_inv_A]


def direct_structure_factor(
    frames: State, q_edges_inv_A: torch.Tensor, radiation: str = "neutron"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Faber–Ziman S(Q) of each frame from the lattice sum, averaged over Q bins.

    S(q) = 1 + [|Σ_j b_j(q) e^{iq·r_j}|² / N − ⟨b²⟩(q)] / ⟨b⟩²(q) on the commensurate
    q vectors of each frame's cell (b_j(q) = f0(|q|) for X-rays), then the mean over the
    vectors with lo ≤ |q| < hi of each bin. Cost ∝ N · V Q_max³ per frame.

    Args:
        frames: periodic frames (one system each) of one composition.
        q_edges_inv_A: [n_bins + 1] increasing bin edges, Å⁻¹ (> 0).
        radiation: "neutron" or "xray".

    Returns:
        ([n_frames, n_bins] S(Q) float64, [n_frames, n_bins] number of q vectors per bin
        counting ±q once).

    Raises:
        ValueError: non-periodic frames, or a bin that holds no commensurate q vector.
    """
    _check_radiation(radiation)
    edges = _check_grid(q_edges_inv_A, "q_edges_inv_A", positive=True)
    if not bool(torch.as_tensor(frames.pbc).all()):
        raise ValueError("direct S(Q) needs cells periodic in all three directions")
    frames = frames.to(torch.float64)
    comp = composition_of(frames)
    species = torch.tensor(comp.atomic_numbers, device=frames.device)
    c = comp.concentrations.to(frames.device)
    n_bins = edges.shape[0] - 1
    device = frames.device
    edges = edges.to(device)
    out = torch.zeros(frames.n_systems, n_bins, dtype=torch.float64, device=device)
    n_vectors = torch.zeros(frames.n_systems, n_bins, dtype=torch.long, device=device)
    for f, one in enumerate(frames.split()):
        q = commensurate_q_vectors(one.cell[0], float(edges[-1]))
        q_norm = q.norm(dim=1)
        bins = torch.bucketize(q_norm, edges, right=True) - 1
        counts = torch.bincount(bins[(bins >= 0) & (bins < n_bins)], minlength=n_bins)
        if bool((counts == 0).any()):
            k = int(torch.nonzero(counts == 0)[0])
            centre = 0.5 * float(edges[k] + edges[k + 1])
            nearest = float(q_norm[torch.argmin((q_norm - centre).abs())]) if q_norm.numel() else float("nan")
            raise ValueError(
                f"direct S(Q): no commensurate q vector of frame {f}'s cell falls in the bin "
                f"[{float(edges[k]):.4g}, {float(edges[k + 1]):.4g}) Å⁻¹ (nearest |q| = {nearest:.4g} Å⁻¹); "
                f"use wider bins, larger Q or the Fourier route"
            )
        keep = (bins >= 0) & (bins < n_bins)
        q, q_norm, bins = q[keep], q_norm[keep], bins[keep]
        types = torch.searchsorted(species, one.atomic_numbers)
        s_q = _lattice_sum(one.positions, types, len(comp.symbols), q, q_norm, c, comp.symbols, radiation)
        out[f] = torch.zeros(n_bins, dtype=torch.float64, device=device).index_add_(0, bins, s_q) / counts
        n_vectors[f] = counts
    return out, n_vectors


def _lattice_sum(
    positions: torch.Tensor,
    types: torch.Tensor,
    n_species: int,
    q: torch.Tensor,
    q_norm: torch.Tensor,
    concentrations: torch.Tensor,
    symbols: tuple[str, ...],
    radiation: str,
) -> torch.Tensor:
    """[M] Faber–Ziman S(q) of one frame at each q vector [M, 3]."""
    n_atoms = positions.shape[0]
    b = scattering_amplitudes(symbols, radiation, q_norm.cpu()).to(q.device)  # [n_s, M]
    mean_b = (concentrations[:, None] * b).sum(0)
    mean_b2 = (concentrations[:, None] * b * b).sum(0)
    chunk = max(1, DIRECT_CHUNK_ELEMENTS // max(1, n_atoms))
    intensity = torch.empty(q.shape[0], dtype=torch.float64, device=q.device)
    for start in range(0, q.shape[0], chunk):
        sl = slice(start, start + chunk)
        phase = positions @ q[sl].T  # [N, m]
        re = phase.new_zeros(n_species, phase.shape[1]).index_add_(0, types, torch.cos(phase))
        im = phase.new_zeros(n_species, phase.shape[1]).index_add_(0, types, torch.sin(phase))
        a_re = (b[:, sl] * re).sum(0)
        a_im = (b[:, sl] * im).sum(0)
        intensity[sl] = (a_re * a_re + a_im * a_im) / n_atoms
    return 1.0 + (intensity - mean_b2) / mean_b**2


# ================================================================== observables
def _check_radiation(radiation: str) -> None:
    if radiation not in RADIATIONS:
        raise ValueError(f"radiation must be one of {RADIATIONS}, got {radiation!r}")


def _check_scatterers(atomic_numbers: torch.Tensor, radiation: str) -> None:
    """One-line ValueError if an element present has no tabulated amplitude."""
    symbols = element_symbols(sorted(int(z) for z in torch.unique(atomic_numbers).tolist()))
    scattering_amplitudes(symbols, radiation)


class _WeightCache:
    """Faber–Ziman weights of the compositions seen so far (tables are read once)."""

    def __init__(self, radiation: str, q_inv_A: torch.Tensor | None) -> None:
        _check_radiation(radiation)
        self.radiation = radiation
        self.q_inv_A = q_inv_A
        self._cache: dict[Composition, FaberZimanWeights] = {}

    def __call__(self, comp: Composition) -> FaberZimanWeights:
        if comp not in self._cache:
            self._cache[comp] = faber_ziman_weights(comp.symbols, comp.concentrations, self.radiation, self.q_inv_A)
        return self._cache[comp]


class _WeightedPartials(RadialObservable):
    """What TotalRDF and G(r) share: the r bins of the partials, the grid and the checks."""

    unit = "1"
    depends_on_parameters = False
    radiation = "neutron"

    def check(self, trajectory: Trajectory) -> None:
        super().check(trajectory)
        _check_scatterers(trajectory.atomic_numbers, self.radiation)


class TotalRDF(_WeightedPartials):
    """Faber–Ziman weighted total g(r) = Σ_ab w_ab g_ab(r) of neutron or X-ray scattering.

    X-ray weights are taken at Q = 0 (f_a(0) ≈ Z_a); the Q dependence of X-ray weights
    has no exact r-space equivalent — compare X-ray data in Q space with
    :class:`StructureFactor` or through :class:`PairDistributionFunction` with a Q range.
    The partials are normalised as :class:`RadialDistribution` (an ideal gas gives
    Σ_ab w_ab (1 − δ_ab/N_a)); binning arguments are those of :class:`RadialDistribution`.

    Args:
        r_max_A, n_bins, bin_width_A, r_min_A, smoothing_A: r bins and Gaussian kernel (Å).
        radiation: "neutron" or "xray".
    """

    def __init__(
        self,
        r_max_A: float,
        n_bins: int | None = None,
        bin_width_A: float | None = None,
        r_min_A: float = 0.0,
        smoothing_A: float | None = None,
        radiation: str = "neutron",
    ) -> None:
        _check_radiation(radiation)
        self.radiation = radiation
        self.name = f"total_rdf_{radiation}"
        self.binning = RadialBinning(r_max_A, n_bins, bin_width_A, r_min_A, smoothing_A, name=self.name)
        self._weights = _WeightCache(radiation, None)

    def per_frame(self, frames: State, potential: Potential | None = None) -> torch.Tensor:
        """[n_frames, n_bins] total g(r) (dimensionless, float64)."""
        p = partial_rdfs(frames, self.binning)
        w = self._weights(p.composition).weights.to(p.g.device)
        return torch.einsum("ab,fabk->fk", w, p.g)


class PairDistributionFunction(_WeightedPartials):
    """Reduced pair distribution function G(r) = 4πρ0 r [g(r) − g∞] of the Faber–Ziman total, Å⁻².

    g∞ = Σ_ab w_ab (1 − δ_ab/N_a) is the ideal-gas value of the periodic cell, so G → 0
    at large r as for measured data. With ``q_max_inv_A`` the curve is sent through the
    Q range of the experiment: F(Q) = Σ_ab w_ab(Q) F_ab(Q) on [0, Q_max] (X-ray weights
    Q-dependent here), then G(r) = (2/π) ∫ F M(Q) exp(−Q²δ²/2) sin(Qr) dQ with the
    optional Lorch window M and damping δ. Without it X-ray weights are those at Q = 0.

    Args:
        r_max_A, n_bins, bin_width_A, r_min_A, smoothing_A: r bins and kernel as
            :class:`RadialDistribution` (r_min_A must be 0 with a Q range).
        radiation: "neutron" or "xray".
        q_max_inv_A: Q_max of the data, Å⁻¹, or None for the plain G(r).
        lorch: Lorch window (only with q_max_inv_A).
        q_damping_A: δ in Å (only with q_max_inv_A).
    """

    unit = "Å⁻²"

    def __init__(
        self,
        r_max_A: float,
        n_bins: int | None = None,
        bin_width_A: float | None = None,
        r_min_A: float = 0.0,
        smoothing_A: float | None = None,
        radiation: str = "neutron",
        q_max_inv_A: float | None = None,
        lorch: bool = False,
        q_damping_A: float = 0.0,
    ) -> None:
        _check_radiation(radiation)
        self.radiation = radiation
        self.name = f"pdf_{radiation}"
        self.binning = RadialBinning(r_max_A, n_bins, bin_width_A, r_min_A, smoothing_A, name=self.name)
        if q_max_inv_A is None:
            if lorch or q_damping_A:
                raise ValueError(f"{self.name}: lorch and q_damping_A need q_max_inv_A")
            self._q = None
        else:
            if not (math.isfinite(q_max_inv_A) and q_max_inv_A > 0):
                raise ValueError(f"{self.name}: q_max_inv_A must be > 0 Å⁻¹, got {q_max_inv_A}")
            if not (math.isfinite(q_damping_A) and q_damping_A >= 0):
                raise ValueError(f"{self.name}: q_damping_A must be ≥ 0 Å, got {q_damping_A}")
            if r_min_A != 0.0:
                raise ValueError(f"{self.name}: a Q range needs r_min_A = 0 (the transform integrates from r = 0)")
            self._q = q_range_grid(self.binning.r_max_A, q_max_inv_A)
        self.q_max_inv_A = q_max_inv_A
        self.lorch = bool(lorch)
        self.q_damping_A = float(q_damping_A)
        self._weights = _WeightCache(radiation, self._q)

    def per_frame(self, frames: State, potential: Potential | None = None) -> torch.Tensor:
        """[n_frames, n_bins] G(r) in Å⁻² (float64)."""
        p = partial_rdfs(frames, self.binning)
        w = self._weights(p.composition).weights.to(p.g.device)
        rho = p.density_per_A3
        if self._q is None:
            h = torch.einsum("ab,fabk->fk", w, p.g - p.g_inf[None, :, :, None])
            return reduced_pdf(p.r_A, h, rho, g_inf=0.0)
        q = self._q.to(p.g.device)
        f_ab = reduced_structure_factor_from_rdf(p.r_A, p.g, rho[:, None, None], q, g_inf=p.g_inf)
        f = torch.einsum("abq,fabq->fq", w, f_ab)
        return pdf_from_reduced_structure_factor(q, f, p.r_A, lorch=self.lorch, q_damping_A=self.q_damping_A)


class StructureFactor(Observable):
    """Faber–Ziman total S(Q) (or F(Q) = Q[S − 1]) on a user Q grid, neutron or X-ray.

    Fourier route (default): S(Q) − 1 = Σ_ab w_ab(Q) 4πρ0/Q ∫_0^R r [g_ab − g∞_ab] M(r) sin(Qr) dr
    from the smoothed partials on bins up to R = r_max_A (≤ half the smallest cell
    height). Reliable for Q ≳ 2π/R; the Gaussian kernel σ damps S − 1 by ≈ exp(−Q²σ²/2).

    Direct route (``direct=True``): the lattice sum on the cell's commensurate q vectors
    (:func:`direct_structure_factor`), averaged over bins whose edges lie halfway between
    the grid points (the outer edges mirror the inner ones). Exact for the periodic
    system and the right choice at low Q; every bin must hold a commensurate q (|q| ≥ 2π/L).

    Args:
        q_inv_A: [n_q] increasing Q grid, Å⁻¹, all > 0.
        radiation: "neutron" or "xray".
        quantity: "S" for S(Q) (dimensionless) or "F" for F(Q) (Å⁻¹).
        direct: use the lattice sum instead of the Fourier transform.
        r_max_A, n_bins, bin_width_A, smoothing_A: r bins of the partials (Fourier route;
            r_max_A required there); bins start at r = 0.
        r_window: None or "lorch" (Fourier route).
    """

    depends_on_parameters = False

    def __init__(
        self,
        q_inv_A: Sequence[float] | torch.Tensor,
        radiation: str = "neutron",
        quantity: str = "S",
        direct: bool = False,
        r_max_A: float | None = None,
        n_bins: int | None = None,
        bin_width_A: float | None = None,
        smoothing_A: float | None = None,
        r_window: str | None = None,
    ) -> None:
        _check_radiation(radiation)
        if quantity not in ("S", "F"):
            raise ValueError(f"quantity must be 'S' or 'F', got {quantity!r}")
        if r_window not in R_WINDOWS:
            raise ValueError(f"r_window must be one of {R_WINDOWS}, got {r_window!r}")
        q = _check_positive(q_inv_A, "q_inv_A")
        if q.numel() > 1:
            q = _check_grid(q, "q_inv_A", positive=True)
        self.radiation = radiation
        self.quantity = quantity
        self.direct = bool(direct)
        self.unit = "1" if quantity == "S" else "Å⁻¹"
        self.name = f"{quantity}_Q_{radiation}{'_direct' if direct else ''}"
        self._q = q
        self._weights = _WeightCache(radiation, q)
        self._edges: torch.Tensor | None
        self._binning: RadialBinning | None
        if self.direct:
            if q.numel() < 2:
                raise ValueError(f"{self.name}: the direct route needs at least two Q points to form bins")
            mid = 0.5 * (q[1:] + q[:-1])
            first = q[0] - (mid[0] - q[0])
            if float(first) <= 0:
                first = 0.5 * q[0]
            self._edges = torch.cat([first.reshape(1), mid, (q[-1] + (q[-1] - mid[-1])).reshape(1)])
            self._binning = None
        else:
            if r_max_A is None:
                raise ValueError(f"{self.name}: the Fourier route needs r_max_A (≤ half the smallest cell height)")
            self._binning = RadialBinning(r_max_A, n_bins, bin_width_A, 0.0, smoothing_A, name=self.name)
            self._edges = None
        self.r_window = r_window

    @property
    def binning(self) -> RadialBinning | None:
        """The r bins of the partials (Fourier route); None for the direct route."""
        return self._binning

    def grid(self) -> torch.Tensor:
        return self._q.clone()

    def grid_label(self) -> str:
        return "Q (Å⁻¹)"

    def q_bin_edges(self) -> torch.Tensor | None:
        """[n_q + 1] bin edges of the direct route in Å⁻¹, None for the Fourier route."""
        return None if self._edges is None else self._edges.clone()

    def check(self, trajectory: Trajectory) -> None:
        if self._binning is not None:
            self._binning.check_cells(trajectory.cells_A, trajectory.pbc)
        elif not bool(torch.as_tensor(trajectory.pbc).all()):
            raise ValueError(f"{self.name}: S(Q) needs cells periodic in all three directions")
        _check_scatterers(trajectory.atomic_numbers, self.radiation)

    def per_frame(self, frames: State, potential: Potential | None = None) -> torch.Tensor:
        """[n_frames, n_q] S(Q) (dimensionless) or F(Q) (Å⁻¹), float64."""
        if self.direct:
            assert self._edges is not None
            s, _ = direct_structure_factor(frames, self._edges, self.radiation)
            return s if self.quantity == "S" else reduced_structure_factor(self._q.to(s.device), s)
        assert self._binning is not None
        p = partial_rdfs(frames, self._binning)
        w = self._weights(p.composition).weights.to(p.g.device)  # [n_s, n_s, n_q]
        q = self._q.to(p.g.device)
        f_ab = reduced_structure_factor_from_rdf(
            p.r_A, p.g, p.density_per_A3[:, None, None], q, g_inf=p.g_inf, r_window=self.r_window
        )
        f = torch.einsum("abq,fabq->fq", w, f_ab)
        return 1.0 + f / q if self.quantity == "S" else f
