"""How much of a missing force a correction term can hold at best: a force-matching bound.

A refinement adds a correction term c(θ) to a base model so that simulated averages match the
data. Whatever θ the data select, the corrected forces can be no closer to the true ones (in RMS,
on the frames fitted) than the best θ *fitted to the true forces themselves*; on held-out frames
that fit's residual estimates the same floor. For a term that is linear in its trainable
parameters (pair splines, the C6/C8 scales of a dispersion term, D3's s6/s8),

    F_c(θ) = Σ_k θ_k F_c(e_k),

and that best θ is a linear least-squares fit of the basis forces F_c(e_k) to the missing force
ΔF = F_reference − F_base on a set of frames. The residual RMS on other frames (larger cells,
say) is the floor no refinement with that correction can go below; the RMS of ΔF itself is the
base model's error. Comparing the two for several correction forms says, before any
refinement is run, which form can recover the missing physics at all.

When the reference is not known (real experiments), the same bound against higher-level labels
of a few frames (e.g. DFT with dispersion) answers the same question.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch

from .potentials.base import Potential
from .state import State


@dataclass
class CorrectionBound:
    """The best least-squares correction of one form and what it leaves.

    Attributes:
        parameters: [n_parameters] the best-fit trainable parameters, in the order of
            ``term.trainable_parameters()`` (flattened).
        fit_sets: names of the frame sets the fit used.
        missing_force_rms_meV_per_A: per frame set, the RMS of ΔF (the uncorrected error).
        residual_rms_meV_per_A: per frame set, the RMS of ΔF − F_c(θ_best).
        n_force_components: per frame set, how many force components entered.
    """

    parameters: np.ndarray
    fit_sets: tuple[str, ...]
    missing_force_rms_meV_per_A: dict[str, float]
    residual_rms_meV_per_A: dict[str, float]
    n_force_components: dict[str, int]


def forces_per_state(term: Potential, states: Sequence[State]) -> list[np.ndarray]:
    """The term's forces on each state: a list of [n_atoms, 3] arrays, eV/Å (float64)."""
    out = []
    for state in states:
        forces = term.compute(state).forces_eV_per_A
        assert forces is not None
        out.append(forces.detach().double().cpu().numpy())
    return out


def force_difference(reference: Potential, model: Potential, states: Sequence[State]) -> list[np.ndarray]:
    """ΔF = F_reference − F_model per state: a list of [n_atoms, 3] arrays, eV/Å (float64)."""
    return [ref - mod for ref, mod in zip(forces_per_state(reference, states), forces_per_state(model, states))]


def _trainable(term: Potential) -> list[torch.nn.Parameter]:
    params = term.trainable_parameters()
    if not params:
        raise ValueError(f"{type(term).__name__}: no trainable parameters to fit")
    return params


def _set_flat(params: Sequence[torch.nn.Parameter], values: torch.Tensor) -> None:
    with torch.no_grad():
        offset = 0
        for p in params:
            n = p.numel()
            p.copy_(values[offset:offset + n].reshape(p.shape).to(p.dtype))
            offset += n


@contextmanager
def _trainables_restored(term: Potential) -> Iterator[list[torch.nn.Parameter]]:
    """The term's trainable parameters, set back to their values on leaving (whatever was set inside)."""
    params = _trainable(term)
    saved = torch.cat([p.detach().reshape(-1).double().clone() for p in params])
    try:
        yield params
    finally:
        _set_flat(params, saved)


def _forces(term: Potential, states: Sequence[State]) -> np.ndarray:
    return np.concatenate([f.reshape(-1) for f in forces_per_state(term, states)])


def force_basis(term: Potential, states: Sequence[State]) -> np.ndarray:
    """[n_force_components, n_parameters] F_c(e_k): the term's forces with one trainable parameter at 1.

    The term's parameters are restored afterwards. Raises ValueError if the term is not linear in
    its trainable parameters (forces at θ = 0 non-zero, or F(e_0 + e_1) ≠ F(e_0) + F(e_1)).
    """
    name = type(term).__name__
    with _trainables_restored(term) as params:
        n = sum(p.numel() for p in params)
        _set_flat(params, torch.zeros(n, dtype=torch.float64))
        zero = _forces(term, states[:1])
        if np.abs(zero).max() > 1e-12:
            raise ValueError(f"{name}: forces at zero parameters are not zero; the term is not linear in them")
        columns = []
        for k in range(n):
            unit = torch.zeros(n, dtype=torch.float64)
            unit[k] = 1.0
            _set_flat(params, unit)
            columns.append(_forces(term, states))
        basis = np.stack(columns, axis=1)
        if n > 1:  # superposition of the first two basis forces, on the first state
            both = torch.zeros(n, dtype=torch.float64)
            both[:2] = 1.0
            _set_flat(params, both)
            summed = _forces(term, states[:1])
            expected = basis[:summed.shape[0], 0] + basis[:summed.shape[0], 1]
            if np.abs(summed - expected).max() > 1e-8 * max(1.0, float(np.abs(expected).max())):
                raise ValueError(f"{name}: forces are not linear in the trainable parameters "
                                 "(train only linear ones, e.g. pair_dispersion's s6/s8 or c6/c8)")
        return basis


def residual_rms(term: Potential, states: Sequence[State], missing_forces: Sequence[np.ndarray],
                 parameters: Sequence[float] | None = None) -> float:
    """RMS of ΔF − F_c(θ) (meV/Å): at the given trainable parameters θ (the term is restored
    afterwards), or at the term's own parameters when ``parameters`` is None."""
    target = np.concatenate([np.asarray(f, dtype=np.float64).reshape(-1) for f in missing_forces])
    if parameters is None:
        forces = _forces(term, states)
    else:
        with _trainables_restored(term) as params:
            theta = torch.as_tensor(list(parameters), dtype=torch.float64)
            n = sum(p.numel() for p in params)
            if theta.numel() != n:
                raise ValueError(f"{type(term).__name__}: {n} trainable parameters, got {theta.numel()} values")
            _set_flat(params, theta)
            forces = _forces(term, states)
    return 1000.0 * float(np.sqrt(np.mean((target - forces) ** 2)))


def best_correction_bound(term: Potential, states: Mapping[str, Sequence[State]],
                          missing_forces: Mapping[str, Sequence[np.ndarray]],
                          fit_on: Sequence[str], rcond: float = 1e-10) -> CorrectionBound:
    """Fit ``term``'s trainable parameters to ΔF on the sets ``fit_on``; the residual on every set.

    Args:
        term: the correction, linear in its trainable parameters.
        states: frame sets by name (each a list of single-system states).
        missing_forces: ΔF per set, one [n_atoms, 3] array (eV/Å) per state
            (:func:`force_difference`).
        fit_on: the names of the sets to fit on; the others are held out.
        rcond: relative cutoff of small singular values (redundant basis functions).
    """
    unknown = sorted(set(fit_on) - set(states))
    if unknown:
        raise ValueError(f"fit_on names frame sets that are not given: {unknown}")
    basis = {name: force_basis(term, list(frames)) for name, frames in states.items()}
    target = {name: np.concatenate([np.asarray(f, dtype=np.float64).reshape(-1) for f in missing_forces[name]])
              for name in states}
    for name in states:
        if basis[name].shape[0] != target[name].shape[0]:
            raise ValueError(f"frame set {name!r}: {target[name].shape[0]} missing-force components for "
                             f"{basis[name].shape[0]} force components of the frames")
    a = np.concatenate([basis[name] for name in fit_on])
    b = np.concatenate([target[name] for name in fit_on])
    theta, *_ = np.linalg.lstsq(a, b, rcond=rcond)
    missing = {name: 1000.0 * float(np.sqrt(np.mean(target[name] ** 2))) for name in states}
    residual = {name: 1000.0 * float(np.sqrt(np.mean((target[name] - basis[name] @ theta) ** 2))) for name in states}
    return CorrectionBound(theta, tuple(fit_on), missing, residual, {name: int(target[name].size) for name in states})


__all__ = ["CorrectionBound", "best_correction_bound", "force_basis", "force_difference", "forces_per_state",
           "residual_rms"]
