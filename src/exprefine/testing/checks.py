"""Consistency checks every Potential must pass: derivatives, symmetries and batching.

:func:`check_potential` compares autograd forces and stress with central finite
differences of the energy, checks that the energy is invariant under rigid
translation, rotation (positions and cell together) and permutation of atoms, and
that a batch gives what its systems give one by one. :func:`check_gradient_wrt_parameters`
compares autograd dE/dθ with finite differences for trainable parameters.

Both work on a deep copy of the potential converted to the check dtype (float64 by
default), so the caller's potential is never modified.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..potentials.base import Potential, PotentialOutput
from ..state import State, concatenate


@dataclass(frozen=True)
class CheckTolerances:
    """Finite-difference steps and tolerances for one dtype.

    Attributes:
        displacement_A: step of the force finite differences, Å.
        strain: step of the stress finite differences (dimensionless).
        force_atol_eV_per_A, force_rtol: a force error passes below atol + rtol·max|F|.
        stress_atol_eV_per_A3, stress_rtol: same for the stress, with max|σ|.
        energy_rtol: invariance and batching errors pass below energy_rtol·max(1 eV, |E|).
        parameter_step: step of the parameter finite differences (parameter units).
        parameter_atol, parameter_rtol: a dE/dθ error passes below atol + rtol·max|dE/dθ|
            (maximum over the checked entries of that parameter tensor).
    """

    displacement_A: float
    strain: float
    force_atol_eV_per_A: float
    force_rtol: float
    stress_atol_eV_per_A3: float
    stress_rtol: float
    energy_rtol: float
    parameter_step: float
    parameter_atol: float
    parameter_rtol: float


#: Default steps and tolerances per dtype.
TOLERANCES: dict[torch.dtype, CheckTolerances] = {
    torch.float64: CheckTolerances(
        displacement_A=1e-4,
        strain=1e-5,
        force_atol_eV_per_A=1e-6,
        force_rtol=1e-5,
        stress_atol_eV_per_A3=1e-8,
        stress_rtol=1e-5,
        energy_rtol=1e-10,
        parameter_step=1e-6,
        parameter_atol=1e-8,
        parameter_rtol=1e-5,
    ),
    torch.float32: CheckTolerances(
        displacement_A=1e-2,
        strain=1e-3,
        force_atol_eV_per_A=1e-2,
        force_rtol=2e-2,
        stress_atol_eV_per_A3=1e-4,
        stress_rtol=2e-2,
        energy_rtol=1e-5,
        parameter_step=1e-3,
        parameter_atol=1e-4,
        parameter_rtol=2e-2,
    ),
}


@dataclass
class PotentialCheckReport:
    """Largest errors found by :func:`check_potential` (all passed their tolerance).

    Attributes:
        force_fd_error_eV_per_A: max |F_autograd − F_finite-difference|.
        stress_fd_error_eV_per_A3: max |σ_autograd − σ_finite-difference|; None if not fully periodic.
        translation_error_eV, rotation_error_eV, permutation_error_eV: max |ΔE| per system.
        equivariance_force_error_eV_per_A: max force error under the three transformations
            (forces invariant, rotated, permuted respectively).
        batch_energy_error_eV, batch_force_error_eV_per_A: batch vs one by one.
        batch_stress_error_eV_per_A3: batch vs one by one; None if not fully periodic.
        tolerances: the steps and tolerances used.
    """

    force_fd_error_eV_per_A: float
    stress_fd_error_eV_per_A3: float | None
    translation_error_eV: float
    rotation_error_eV: float
    permutation_error_eV: float
    equivariance_force_error_eV_per_A: float
    batch_energy_error_eV: float
    batch_force_error_eV_per_A: float
    batch_stress_error_eV_per_A3: float | None
    tolerances: CheckTolerances


@dataclass
class ParameterGradientReport:
    """Result of :func:`check_gradient_wrt_parameters`.

    Attributes:
        max_error_by_parameter: parameter name -> max |dE/dθ autograd − finite difference| (eV per unit θ).
        n_entries_checked: number of parameter entries compared.
        tolerances: the steps and tolerances used.
    """

    max_error_by_parameter: dict[str, float]
    n_entries_checked: int
    tolerances: CheckTolerances


# ---------------------------------------------------------------- public checks
def check_potential(
    potential: Potential,
    state: State,
    *,
    dtype: torch.dtype = torch.float64,
    atol_force: float | None = None,
    eps: float | None = None,
    strain_eps: float | None = None,
    max_fd_atoms: int = 12,
    seed: int = 0,
) -> PotentialCheckReport:
    """Check forces, stress, invariances and batching of ``potential`` on ``state``.

    Args:
        potential: the potential (not modified: a copy in ``dtype`` is checked).
        state: one or several systems; stress is checked when all are fully periodic.
        dtype: float64 (default) or float32; selects the row of :data:`TOLERANCES`.
        atol_force: absolute force tolerance in eV/Å (default from the table).
        eps: finite-difference displacement in Å (default from the table).
        strain_eps: finite-difference strain (default from the table).
        max_fd_atoms: at most this many atoms (a random subset) get force finite differences.
        seed: seed of the random subset, translation, rotation, permutation and rattle.

    Returns:
        The largest errors found.

    Raises:
        AssertionError: listing every check that failed, with error and tolerance.
    """
    tol = _tolerances(dtype)
    tol = replace(
        tol,
        force_atol_eV_per_A=tol.force_atol_eV_per_A if atol_force is None else float(atol_force),
        displacement_A=tol.displacement_A if eps is None else float(eps),
        strain=tol.strain if strain_eps is None else float(strain_eps),
    )
    pot = copy.deepcopy(potential).to(dtype)
    st = state.to(dtype=dtype).detach()
    rng = np.random.default_rng(seed)
    name = f"check_potential({type(potential).__name__})"
    periodic = bool(st.pbc.all())
    failures: list[str] = []

    ref = pot.compute(st, forces=True, stress=periodic)
    energy = ref.energy_eV.detach()
    if not bool(torch.isfinite(energy).all()):
        raise AssertionError(f"{name}: energy is not finite: {energy.tolist()}")
    e_tol = tol.energy_rtol * float(torch.clamp(energy.abs().max(), min=1.0))
    f_tol = tol.force_atol_eV_per_A + tol.force_rtol * float(_forces(ref).abs().max())

    # forces vs finite differences
    f_fd = _finite_difference_forces(pot, st, tol.displacement_A, max_fd_atoms, rng)
    atoms_checked = list(f_fd)
    f_ad = _forces(ref)[atoms_checked]
    f_err_all = (f_ad - torch.stack([f_fd[i] for i in atoms_checked])).abs()
    force_err = float(f_err_all.max())
    if force_err > f_tol:
        worst = int(f_err_all.max(dim=1).values.argmax())
        failures.append(
            f"forces differ from finite differences of the energy by {force_err:.3e} eV/Å "
            f"(tolerance {f_tol:.1e}) at atom {atoms_checked[worst]}"
        )

    # stress vs finite differences under strain
    stress_err = None
    s_tol = 0.0
    if periodic:
        s_tol = tol.stress_atol_eV_per_A3 + tol.stress_rtol * float(_stress(ref).abs().max())
        s_fd = _finite_difference_stress(pot, st, tol.strain)
        stress_err = float((_stress(ref) - s_fd).abs().max())
        if stress_err > s_tol:
            failures.append(
                f"stress differs from finite differences of the energy under strain by {stress_err:.3e} eV/Å³ "
                f"(tolerance {s_tol:.1e})"
            )

    # rigid translation
    shift = torch.as_tensor(rng.uniform(-2.0, 2.0, size=3), dtype=dtype)
    out = pot.compute(replace(st, positions=st.positions + shift), forces=True)
    translation_err = _max_abs(out.energy_eV - energy)
    equiv_f_err = _max_abs(_forces(out) - _forces(ref))
    if translation_err > e_tol:
        failures.append(f"energy changes by {translation_err:.3e} eV under a rigid translation (tolerance {e_tol:.1e})")

    # rigid rotation of positions and cell
    rot = torch.as_tensor(_random_rotation(rng), dtype=dtype)
    out = pot.compute(replace(st, positions=st.positions @ rot.T, cell=st.cell @ rot.T), forces=True)
    rotation_err = _max_abs(out.energy_eV - energy)
    equiv_f_err = max(equiv_f_err, _max_abs(_forces(out) - _forces(ref) @ rot.T))
    if rotation_err > e_tol:
        failures.append(
            f"energy changes by {rotation_err:.3e} eV under a rigid rotation of positions and cell (tolerance {e_tol:.1e})"
        )

    # permutation of atoms within each system
    perm = _random_permutation(st, rng)
    out = pot.compute(_permuted(st, perm), forces=True)
    permutation_err = _max_abs(out.energy_eV - energy)
    equiv_f_err = max(equiv_f_err, _max_abs(_forces(out) - _forces(ref)[perm]))
    if permutation_err > e_tol:
        failures.append(f"energy changes by {permutation_err:.3e} eV under a permutation of atoms (tolerance {e_tol:.1e})")
    if equiv_f_err > f_tol:
        failures.append(
            f"forces are not equivariant under translation/rotation/permutation: error {equiv_f_err:.3e} eV/Å "
            f"(tolerance {f_tol:.1e})"
        )

    # batch vs one by one
    batch = st if st.n_systems > 1 else concatenate([_rattled(st, rng), st])
    out_batch = pot.compute(batch, forces=True, stress=periodic)
    singles = [pot.compute(one, forces=True, stress=periodic) for one in batch.split()]
    batch_e_err = _max_abs(out_batch.energy_eV - torch.cat([o.energy_eV for o in singles]))
    batch_f_err = _max_abs(_forces(out_batch) - torch.cat([_forces(o) for o in singles]))
    batch_s_err = None
    if periodic:
        batch_s_err = _max_abs(_stress(out_batch) - torch.cat([_stress(o) for o in singles]))
    if batch_e_err > e_tol:
        failures.append(f"batched energies differ from one-by-one by {batch_e_err:.3e} eV (tolerance {e_tol:.1e})")
    if batch_f_err > f_tol:
        failures.append(f"batched forces differ from one-by-one by {batch_f_err:.3e} eV/Å (tolerance {f_tol:.1e})")
    if batch_s_err is not None and batch_s_err > s_tol:
        failures.append(f"batched stress differs from one-by-one by {batch_s_err:.3e} eV/Å³ (tolerance {s_tol:.1e})")

    if failures:
        raise AssertionError(f"{name} failed ({dtype}):\n  - " + "\n  - ".join(failures))
    return PotentialCheckReport(
        force_fd_error_eV_per_A=force_err,
        stress_fd_error_eV_per_A3=stress_err,
        translation_error_eV=translation_err,
        rotation_error_eV=rotation_err,
        permutation_error_eV=permutation_err,
        equivariance_force_error_eV_per_A=equiv_f_err,
        batch_energy_error_eV=batch_e_err,
        batch_force_error_eV_per_A=batch_f_err,
        batch_stress_error_eV_per_A3=batch_s_err,
        tolerances=tol,
    )


def check_gradient_wrt_parameters(
    potential: Potential,
    state: State,
    *,
    dtype: torch.dtype = torch.float64,
    eps: float | None = None,
    max_entries_per_parameter: int = 16,
    seed: int = 0,
) -> ParameterGradientReport:
    """Compare autograd dE/dθ (E summed over systems) with central finite differences.

    Every trainable parameter tensor is checked; tensors with more than
    ``max_entries_per_parameter`` entries are checked on a random subset.

    Raises:
        ValueError: if the potential has no trainable parameter.
        AssertionError: listing every entry whose gradient is wrong.
    """
    tol = _tolerances(dtype)
    if eps is not None:
        tol = replace(tol, parameter_step=float(eps))
    pot = copy.deepcopy(potential).to(dtype)
    st = state.to(dtype=dtype).detach()
    named = [(n, p) for n, p in pot.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError(f"{type(potential).__name__} has no trainable parameters")
    rng = np.random.default_rng(seed)
    name = f"check_gradient_wrt_parameters({type(potential).__name__})"

    grads = torch.autograd.grad(pot.energy(st).sum(), [p for _, p in named], allow_unused=True)
    failures: list[str] = []
    errors: dict[str, float] = {}
    n_checked = 0
    for (pname, param), grad in zip(named, grads):
        grad = torch.zeros_like(param) if grad is None else grad.detach()
        n = param.numel()
        flat_idx = np.arange(n) if n <= max_entries_per_parameter else rng.choice(n, max_entries_per_parameter, replace=False)
        fd, ad, where = [], [], []
        for f in flat_idx:
            idx = tuple(int(i) for i in np.unravel_index(int(f), tuple(param.shape)))
            fd.append(_finite_difference_parameter(pot, st, param, idx, tol.parameter_step))
            ad.append(float(grad[idx]))
            where.append(idx)
        fd_a, ad_a = np.array(fd), np.array(ad)
        err = np.abs(fd_a - ad_a)
        p_tol = tol.parameter_atol + tol.parameter_rtol * float(np.abs(fd_a).max(initial=0.0))
        errors[pname] = float(err.max(initial=0.0))
        n_checked += len(flat_idx)
        for k in np.nonzero(err > p_tol)[0][:3]:
            failures.append(
                f"dE/d{pname}{list(where[k])}: autograd {ad_a[k]:.6e} vs finite difference {fd_a[k]:.6e} "
                f"(tolerance {p_tol:.1e})"
            )
    if failures:
        raise AssertionError(f"{name} failed ({dtype}):\n  - " + "\n  - ".join(failures))
    return ParameterGradientReport(max_error_by_parameter=errors, n_entries_checked=n_checked, tolerances=tol)


# ------------------------------------------------------------------- helpers
def _tolerances(dtype: torch.dtype) -> CheckTolerances:
    if dtype not in TOLERANCES:
        raise ValueError(f"no check tolerances for dtype {dtype}; use one of {list(TOLERANCES)}")
    return TOLERANCES[dtype]


def _forces(out: PotentialOutput) -> torch.Tensor:
    assert out.forces_eV_per_A is not None, "forces were not computed"
    return out.forces_eV_per_A


def _stress(out: PotentialOutput) -> torch.Tensor:
    assert out.stress_eV_per_A3 is not None, "stress was not computed"
    return out.stress_eV_per_A3


def _max_abs(t: torch.Tensor) -> float:
    return float(t.detach().abs().max()) if t.numel() else 0.0


def _energies(potential: Potential, state: State) -> torch.Tensor:
    """[n_systems] energies without a graph."""
    with torch.no_grad():
        return potential.energy(state).detach()


def _finite_difference_forces(
    potential: Potential, state: State, eps_A: float, max_atoms: int, rng: np.random.Generator
) -> dict[int, torch.Tensor]:
    """atom index -> [3] force −∂E/∂x by central differences, for a random subset of atoms."""
    n = state.n_atoms
    atoms = np.arange(n) if n <= max_atoms else np.sort(rng.choice(n, max_atoms, replace=False))
    out: dict[int, torch.Tensor] = {}
    for i in atoms.tolist():
        s = int(state.system_idx[i])
        f = torch.empty(3, dtype=state.dtype)
        for a in range(3):
            e = []
            for sign in (1.0, -1.0):
                pos = state.positions.clone()
                pos[i, a] += sign * eps_A
                e.append(_energies(potential, replace(state, positions=pos))[s])
            f[a] = -(e[0] - e[1]) / (2.0 * eps_A)
        out[i] = f
    return out


def _strained(state: State, strain: torch.Tensor) -> State:
    """Positions and cell deformed by I + strain (same [3, 3] strain for every system)."""
    deform = torch.eye(3, dtype=state.dtype) + strain
    return replace(state, positions=state.positions @ deform, cell=state.cell @ deform)


def _finite_difference_stress(potential: Potential, state: State, eps: float) -> torch.Tensor:
    """[n_systems, 3, 3] σ_ab = (1/V) ∂E/∂ε_ab for a symmetric strain, by central differences."""
    volume = state.volume_A3()
    stress = torch.zeros(state.n_systems, 3, 3, dtype=state.dtype)
    for a in range(3):
        for b in range(a, 3):
            unit = torch.zeros(3, 3, dtype=state.dtype)
            unit[a, b] += 0.5
            unit[b, a] += 0.5
            e_plus = _energies(potential, _strained(state, eps * unit))
            e_minus = _energies(potential, _strained(state, -eps * unit))
            value = (e_plus - e_minus) / (2.0 * eps) / volume
            stress[:, a, b] = value
            stress[:, b, a] = value
    return stress


def _finite_difference_parameter(
    potential: Potential, state: State, param: torch.nn.Parameter, idx: tuple[int, ...], eps: float
) -> float:
    """Central difference of the summed energy with respect to one parameter entry."""
    with torch.no_grad():
        original = param[idx].clone()
        param[idx] = original + eps
        e_plus = float(potential.energy(state).sum())
        param[idx] = original - eps
        e_minus = float(potential.energy(state).sum())
        param[idx] = original
    return (e_plus - e_minus) / (2.0 * eps)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """[3, 3] proper rotation (det +1), uniformly distributed."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _random_permutation(state: State, rng: np.random.Generator) -> torch.Tensor:
    """[n_atoms] permutation that shuffles atoms within each system."""
    parts = []
    start = 0
    for n in state.n_atoms_per_system.tolist():
        parts.append(start + rng.permutation(n))
        start += n
    return torch.as_tensor(np.concatenate(parts), dtype=torch.long)


def _permuted(state: State, perm: torch.Tensor) -> State:
    return replace(
        state,
        positions=state.positions[perm],
        atomic_numbers=state.atomic_numbers[perm],
        masses=state.masses[perm],
        velocities=None if state.velocities is None else state.velocities[perm],
    )


def _rattled(state: State, rng: np.random.Generator, amplitude_A: float = 0.02) -> State:
    noise = torch.as_tensor(rng.normal(scale=amplitude_A, size=(state.n_atoms, 3)), dtype=state.dtype)
    return replace(state.clone(), positions=state.positions + noise)


__all__ = [
    "CheckTolerances",
    "TOLERANCES",
    "PotentialCheckReport",
    "ParameterGradientReport",
    "check_potential",
    "check_gradient_wrt_parameters",
]
