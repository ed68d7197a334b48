"""Grimme's D3(BJ) dispersion as a fixed exprefine Potential, evaluated by the ``dftd3`` package.

A "DFT + D3" model is an MLIP trained on dispersion-free labels plus this term; summed with
:class:`~exprefine.potentials.sum.SumPotential` it can be sampled with exprefine's MD and
evaluated like any other potential. Its four parameters (s6, s8, a1, a2) can be refined by
reweighting (the energies of fixed frames are differentiable in them).

The ``dftd3`` library returns E, ∂E/∂x and the virial W = ∂E/∂ε (ε: symmetric strain of
positions and cell). A custom autograd function hands these back to torch, so forces
(−∂E/∂x) and stress ((1/V) ∂E/∂ε, exprefine's convention) come out of
:meth:`Potential.compute` like for any torch potential. The cell gradient is reconstructed
from W: with cell rows h_i, ∂E/∂ε = Σ_i x_i ⊗ ∂E/∂x_i + Σ_i h_i ⊗ ∂E/∂h_i, so
∂E/∂h = h⁻ᵀ (W − xᵀ ∂E/∂x). Only first derivatives are available (no force training
through this term).

Units: eV, Å inside exprefine; the library works in hartree and bohr.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import write_text_atomically
from ..state import State
from .base import Potential
from .dispersion import PairDispersion

BOHR_A = 0.52917721090380  # CODATA 2018, as in ase.units
HARTREE_eV = 27.211386245988  # CODATA 2018, as in ase.units


@dataclass(frozen=True)
class D3Parameters:
    """Rational (Becke–Johnson) damping parameters of D3(BJ) and the library's real-space cutoffs.

    Attributes:
        s6, s8: scaling of the C6/r⁶ and C8/r⁸ terms (dimensionless).
        a1: dimensionless damping factor; a2: damping radius in bohr (the library's unit,
            as D3 parameters are always tabulated).
        s9: scaling of the three-body (Axilrod–Teller–Muto) term; 0 switches it off (much faster).
        cutoff_two_body_bohr, cutoff_three_body_bohr, cutoff_coordination_bohr: real-space
            cutoffs of the pair sum, the three-body sum and the coordination numbers.
    """

    s6: float
    s8: float
    a1: float
    a2: float
    s9: float = 0.0
    cutoff_two_body_bohr: float = 60.0
    cutoff_three_body_bohr: float = 40.0
    cutoff_coordination_bohr: float = 40.0

    def damping(self) -> dict[str, float]:
        """The keyword arguments of ``dftd3.interface.RationalDampingParam``."""
        return {"s6": self.s6, "s8": self.s8, "a1": self.a1, "a2": self.a2, "s9": self.s9}

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class D3Evaluation:
    """D3 of every system of a batch, in exprefine units.

    Attributes:
        energy_eV: [n_systems] energies.
        gradient_eV_per_A: [n_atoms, 3] ∂E/∂x.
        cell_gradient_eV_per_A: [n_systems, 3, 3] ∂E/∂h (cell rows h) at fixed Cartesian positions.
    """

    energy_eV: np.ndarray
    gradient_eV_per_A: np.ndarray
    cell_gradient_eV_per_A: np.ndarray


class _D3Energy(torch.autograd.Function):
    """E(positions, cell) with the derivatives the library computed in the forward pass."""

    @staticmethod
    def forward(ctx: Any, positions: torch.Tensor, cell: torch.Tensor, term: "D3Dispersion",
                state: State) -> torch.Tensor:
        result = term.evaluate(state)
        ctx.save_for_backward(
            torch.as_tensor(result.gradient_eV_per_A, dtype=positions.dtype, device=positions.device),
            torch.as_tensor(result.cell_gradient_eV_per_A, dtype=cell.dtype, device=cell.device),
            state.system_idx,
        )
        return torch.as_tensor(result.energy_eV, dtype=positions.dtype, device=positions.device)

    @staticmethod
    def backward(ctx: Any, grad_energy: torch.Tensor):
        gradient, cell_gradient, system_idx = ctx.saved_tensors
        grad_positions = gradient * grad_energy[system_idx][:, None]
        grad_cell = cell_gradient * grad_energy[:, None, None]
        return grad_positions, grad_cell, None, None


class _D3ParameterEnergy(torch.autograd.Function):
    """E(state; s6, s8, a1, a2) of fixed frames with its derivatives in D3's four parameters.

    E = s6·E6(a1, a2) + s8·E8(a1, a2): the library evaluates the C6 and the C8 part separately
    (s6 = 1, s8 = 0 and the reverse), which are the derivatives in the scales. The damping enters
    non-linearly, so ∂E/∂a1 and ∂E/∂a2 are central differences of the library's energy (steps
    :data:`DAMPING_STEPS`; two more evaluations per trainable damping parameter, none for a fixed one).
    No position derivatives: for frames whose positions are fixed (reweighting), this is all DiffTRe needs.
    """

    @staticmethod
    def forward(ctx: Any, s6: torch.Tensor, s8: torch.Tensor, a1: torch.Tensor, a2: torch.Tensor,
                term: "D3Dispersion", state: State) -> torch.Tensor:
        current = term.current_parameters()
        e6 = term.evaluate(state, replace(current, s6=1.0, s8=0.0), with_gradient=False).energy_eV
        e8 = term.evaluate(state, replace(current, s6=0.0, s8=1.0), with_gradient=False).energy_eV
        slopes = []
        for name, parameter in (("a1", a1), ("a2", a2)):
            if not parameter.requires_grad:
                slopes.append(np.zeros_like(e6))
                continue
            value, h = getattr(current, name), DAMPING_STEPS[name]
            up = term.evaluate(state, replace(current, **{name: value + h}), with_gradient=False).energy_eV
            down = term.evaluate(state, replace(current, **{name: value - h}), with_gradient=False).energy_eV
            slopes.append((up - down) / (2.0 * h))
        parts = torch.as_tensor(np.stack([e6, e8, *slopes]), dtype=s6.dtype, device=s6.device)
        ctx.save_for_backward(parts)
        return s6 * parts[0] + s8 * parts[1]

    @staticmethod
    def backward(ctx: Any, grad_energy: torch.Tensor):
        (parts,) = ctx.saved_tensors
        grads = tuple((grad_energy * part).sum().reshape(1) for part in parts)
        return (*grads, None, None)


#: Which of D3's parameters may train: the global scales s6, s8 (the energy is linear in them) and
#: the Becke–Johnson damping a1 and a2 (bohr), whose energy derivatives are finite differences.
D3_TRAINABLE = ("s6", "s8", "a1", "a2")

#: Central-difference steps of the damping parameters (a1 dimensionless, a2 in bohr): truncation
#: error O(h²) (≈ 1e-8 relative), round-off ≈ 1e-16·|E|/h.
DAMPING_STEPS = {"a1": 1e-4, "a2": 1e-3}


class D3Dispersion(Potential):
    """D3(BJ) dispersion energy of every system of a batch (``dftd3`` package).

    Args:
        parameters: damping parameters and cutoffs (kept as ``settings``: ``parameters`` is nn.Module's).
        trainable: which of ``s6``, ``s8``, ``a1``, ``a2`` train (none by default). The scales always
            live in the parameters ``s6``/``s8`` (starting at ``parameters.s6``/``.s8``); ``a1`` and
            ``a2`` (bohr) become parameters of those names only when they train (otherwise the
            settings' values hold, and checkpoints of fixed-damping terms keep their two entries).
            Only the energy of fixed positions is differentiable in them — what reweighting needs
            (the damping by finite differences, :class:`_D3ParameterEnergy`); in a force or stress
            evaluation they enter by value (no force-label or pressure training).

    The library's structure object of each system is kept and updated in place while the
    atoms (numbers, periodicity) stay the same, as along an MD trajectory.
    """

    def __init__(self, parameters: D3Parameters, trainable: tuple[str, ...] | list[str] = ()) -> None:
        super().__init__()
        try:
            import dftd3.interface  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("D3Dispersion needs the dftd3 package: pip install 'exprefine[reference]'") from exc
        unknown = sorted(set(trainable) - set(D3_TRAINABLE))
        if unknown:
            raise ValueError(f"D3Dispersion: only {list(D3_TRAINABLE)} can train, got {unknown}")
        self.settings = parameters
        self.cutoff_A = float(parameters.cutoff_two_body_bohr) * BOHR_A
        self.s6 = torch.nn.Parameter(torch.tensor([float(parameters.s6)], dtype=torch.float64),
                                     requires_grad="s6" in trainable)
        self.s8 = torch.nn.Parameter(torch.tensor([float(parameters.s8)], dtype=torch.float64),
                                     requires_grad="s8" in trainable)
        for name in ("a1", "a2"):
            if name in trainable:
                value = torch.tensor([float(getattr(parameters, name))], dtype=torch.float64)
                self.register_parameter(name, torch.nn.Parameter(value))
        self._models: dict[int, tuple[tuple, Any]] = {}

    def _damping(self, name: str, dtype: torch.dtype) -> torch.Tensor:
        """The trainable damping parameter ``name`` or, when it is fixed, its value as a constant."""
        parameter = self._parameters.get(name)
        if parameter is not None:
            return parameter.to(dtype)
        return torch.tensor([float(getattr(self.settings, name))], dtype=dtype)

    def trains(self) -> bool:
        """Whether any of D3's parameters trains."""
        return any(p.requires_grad for p in self.parameters())

    def current_parameters(self) -> D3Parameters:
        """The settings with the current values of every trainable parameter."""
        values = {name: float(p.detach()) for name, p in self.named_parameters()}
        return replace(self.settings, **values)

    def energy(self, state: State) -> torch.Tensor:
        """[n_systems] D3 energy in eV (differentiable in positions and cell, first order, or in the
        trainable parameters for fixed positions)."""
        if not torch.is_grad_enabled():  # energies only (reweighting): no derivatives from the library
            energy = self.evaluate(state, with_gradient=False).energy_eV
            return torch.as_tensor(energy, dtype=state.positions.dtype, device=state.positions.device)
        if self.trains() and not state.positions.requires_grad:
            dtype = state.positions.dtype
            return _D3ParameterEnergy.apply(self.s6.to(dtype), self.s8.to(dtype), self._damping("a1", dtype),
                                            self._damping("a2", dtype), self, state)
        return _D3Energy.apply(state.positions, state.cell, self, state)

    def compute(self, state: State, *, forces: bool = True, stress: bool = False, create_graph: bool = False):
        """As :meth:`Potential.compute`; refuses derivatives of forces or stress in trainable
        parameters (pressure targets, force labels), which the library cannot give, instead of returning zeros."""
        if create_graph and self.trains():
            raise NotImplementedError("D3Dispersion: forces and stress are not differentiable in D3's parameters "
                                      "(a pressure target or force labels cannot train s6/s8/a1/a2); train them "
                                      "on structure or energy targets only")
        return super().compute(state, forces=forces, stress=stress, create_graph=create_graph)

    def summary(self) -> dict[str, float]:
        """The two global scales, and the damping where it trains, for logs."""
        current = self.current_parameters()
        out = {"s6": current.s6, "s8": current.s8}
        if "a1" in self._parameters:
            out["a1"] = current.a1
        if "a2" in self._parameters:
            out["a2_bohr"] = current.a2
        return out

    def _model(self, system: int, numbers: np.ndarray, positions_bohr: np.ndarray, lattice_bohr: np.ndarray | None,
               periodic: np.ndarray):
        from dftd3.interface import DispersionModel

        key = (tuple(numbers.tolist()), tuple(periodic.tolist()))
        cached = self._models.get(system)
        if cached is not None and cached[0] == key:
            model = cached[1]
            model.update(positions_bohr, lattice_bohr)
            return model
        model = DispersionModel(numbers, positions_bohr, lattice_bohr, periodic if periodic.any() else None)
        p = self.settings
        model.set_realspace_cutoff(p.cutoff_two_body_bohr, p.cutoff_three_body_bohr, p.cutoff_coordination_bohr)
        self._models[system] = (key, model)
        return model

    def evaluate(self, state: State, parameters: D3Parameters | None = None,
                 with_gradient: bool = True) -> D3Evaluation:
        """Energy, position gradient and cell gradient of every system (float64 numpy).

        Args:
            parameters: D3's parameters to use instead of the current ones (:meth:`current_parameters`);
                only their damping and scales are read (the cutoffs are the settings').
            with_gradient: compute the derivatives (zeros otherwise).
        """
        from dftd3.interface import RationalDampingParam

        damping = RationalDampingParam(**(parameters or self.current_parameters()).damping())
        positions = state.positions.detach().cpu().double().numpy()
        cells = state.cell.detach().cpu().double().numpy()
        pbc = state.pbc.detach().cpu().numpy().astype(bool)
        numbers = state.atomic_numbers.detach().cpu().numpy().astype(np.int64)
        idx = state.system_idx.detach().cpu().numpy()
        bounds = np.searchsorted(idx, np.arange(state.n_systems + 1))
        energy = np.zeros(state.n_systems)
        gradient = np.zeros_like(positions)
        cell_gradient = np.zeros_like(cells)
        for s in range(state.n_systems):
            lo, hi = bounds[s], bounds[s + 1]
            x = positions[lo:hi]
            periodic = pbc[s]
            lattice = cells[s] / BOHR_A if periodic.any() else None
            model = self._model(s, numbers[lo:hi], x / BOHR_A, lattice, periodic)
            res = model.get_dispersion(damping, grad=with_gradient)
            energy[s] = float(res["energy"]) * HARTREE_eV
            if not with_gradient:
                continue
            g = np.asarray(res["gradient"]) * (HARTREE_eV / BOHR_A)
            gradient[lo:hi] = g
            if periodic.any():
                virial = np.asarray(res["virial"]) * HARTREE_eV  # ∂E/∂ε, eV
                cell_gradient[s] = np.linalg.solve(cells[s].T, virial - x.T @ g)
        return D3Evaluation(energy, gradient, cell_gradient)


def save_d3_parameters(term: D3Dispersion, path: str | Path) -> Path:
    """Write the term's D3(BJ) parameters, with the current values of the trainable ones, as JSON
    (units in the keys)."""
    path = Path(path)
    settings = asdict(term.current_parameters())
    record = {"damping": "d3bj", **{("a2_bohr" if k == "a2" else k): v for k, v in settings.items()}}
    return write_text_atomically(path, json.dumps(record, indent=1) + "\n")


def load_d3_parameters(path: str | Path) -> D3Parameters:
    """The :class:`D3Parameters` of a file written by :func:`save_d3_parameters`."""
    record = json.loads(Path(path).read_text())
    record.pop("damping", None)
    record["a2"] = record.pop("a2_bohr")
    return D3Parameters(**record)


def d3_ase_calculator(parameters: D3Parameters):
    """The same D3(BJ) term as an ASE calculator (``dftd3.ase.DFTD3``), to add to a model's own
    calculator with ``ase.calculators.mixing.SumCalculator``."""
    from dftd3.ase import DFTD3

    p = parameters
    cutoffs = {"disp2": p.cutoff_two_body_bohr * BOHR_A, "disp3": p.cutoff_three_body_bohr * BOHR_A,
               "cn": p.cutoff_coordination_bohr * BOHR_A}
    return DFTD3(damping="d3bj", params_tweaks=p.damping(), realspace_cutoff=cutoffs)


@dataclass(frozen=True)
class D3PairCoefficients:
    """D3's dispersion coefficients of a structure, averaged per unordered species pair.

    Attributes:
        species: the elements, e.g. ``("C", "N")``; pairs in upper-triangle row-major order
            (for [C, N]: CC, CN, NN), the layout of
            :class:`~exprefine.potentials.dispersion.PairDispersion`.
        c6_eV_A6, c8_eV_A8: [n_pairs] mean C6 and C8 over the atom pairs of that type, at the
            coordination numbers the atoms have in the structure.
        c6_sd_eV_A6: [n_pairs] their standard deviation over the atom pairs (how much the
            environment dependence a fixed pair term leaves out).
        damping_radius_A: [n_pairs] Becke–Johnson radius a1·√(C8/C6) + a2.
    """

    species: tuple[str, ...]
    c6_eV_A6: tuple[float, ...]
    c8_eV_A8: tuple[float, ...]
    c6_sd_eV_A6: tuple[float, ...]
    damping_radius_A: tuple[float, ...]


#: pairs of atoms closer than this (Å) give :func:`d3_pair_coefficients` its averages in a periodic structure
PAIR_SAMPLE_A = 10.0


def periodic_surroundings(positions_A: np.ndarray, cell_A: np.ndarray, margin_A: float) -> tuple[np.ndarray, np.ndarray]:
    """The periodic images of a cell's atoms that lie within ``margin_A`` of the cell, along each cell vector.

    Args:
        positions_A: [n_atoms, 3] Cartesian positions, Å; cell_A: [3, 3] cell rows (periodic in all
            three directions), Å; margin_A: thickness of the shell around the cell, Å (measured
            perpendicular to each pair of cell faces).

    Returns:
        [n_images] index of the atom each image copies and [n_images, 3] image positions, Å
        (the cell's own atoms excluded).
    """
    cell = np.asarray(cell_A, dtype=np.float64)
    positions = np.asarray(positions_A, dtype=np.float64)
    fractional = np.linalg.solve(cell.T, positions.T).T
    spacing = 1.0 / np.linalg.norm(np.linalg.inv(cell), axis=0)  # distances between opposite faces
    margin = margin_A / spacing  # the shell in fractional units, per cell vector
    reach = np.ceil(margin).astype(int)
    shifts = np.array([(a, b, c) for a in range(-reach[0], reach[0] + 1) for b in range(-reach[1], reach[1] + 1)
                       for c in range(-reach[2], reach[2] + 1) if (a, b, c) != (0, 0, 0)], dtype=np.float64)
    shifted = fractional[None, :, :] + shifts[:, None, :]  # [n_shifts, n_atoms, 3]
    keep = np.all((shifted >= -margin) & (shifted < 1.0 + margin), axis=-1)
    _, atom = np.nonzero(keep)
    return atom, shifted[keep] @ cell


def d3_pair_coefficients(numbers: np.ndarray, positions_A: np.ndarray, species: list[str], a1: float,
                         a2_bohr: float, cell_A: np.ndarray | None = None,
                         surroundings_A: float = 8.0) -> D3PairCoefficients:
    """Per-species-pair C6, C8 and BJ radius of D3 for the atoms of one structure.

    With zero damping (a1 = a2 = 0) and one of s6, s8 at a time, D3's additive pair energies of a
    cluster are E_ij = −C_n,ij/(2 r_ij^n) per ordered pair, so C_n,ij = −2 E_ij r_ij^n, at each
    atom's D3 coordination number; the averages run over the pairs of the structure's own atoms.

    Args:
        numbers: [n_atoms] atomic numbers; positions_A: [n_atoms, 3] Cartesian positions, Å.
        species: the elements of the pair term, e.g. ``["C", "N"]``.
        a1, a2_bohr: the BJ damping of the functional the fixed term stands for (e.g. PBE:
            a1 = 0.4289, a2 = 4.4407 bohr), used only for the damping radius.
        cell_A: [3, 3] cell rows of a structure periodic in all three directions: its atoms get the
            coordination numbers of the periodic solid (the cluster includes their periodic images
            within ``surroundings_A`` Å; D3's counting function is below 1e-3 beyond ≈ 4 Å for C
            and N). None: the structure is a cluster, and atoms near its surface count fewer neighbours.
    """
    from ase.data import atomic_numbers
    from dftd3.interface import DispersionModel, RationalDampingParam

    numbers = np.asarray(numbers, dtype=np.int64)
    positions = np.asarray(positions_A, dtype=np.float64)
    n = len(numbers)
    cluster_numbers, cluster_positions = numbers, positions
    if cell_A is not None:
        atom, images = periodic_surroundings(positions, cell_A, surroundings_A)
        cluster_numbers = np.concatenate([numbers, numbers[atom]])
        cluster_positions = np.concatenate([positions, images])
    positions_bohr = positions / BOHR_A
    model = DispersionModel(cluster_numbers, cluster_positions / BOHR_A)
    if cell_A is not None:
        # C_n,ij does not depend on r_ij: pairs closer than PAIR_SAMPLE_A sample every combination of
        # sites and keep the library's pair list of the larger cluster short; coordination numbers
        # are converged by then
        cut = PAIR_SAMPLE_A / BOHR_A
        model.set_realspace_cutoff(cut, cut, cut)
    pair6 = model.get_pairwise_dispersion(RationalDampingParam(s6=1.0, s8=0.0, a1=0.0, a2=0.0))
    pair8 = model.get_pairwise_dispersion(RationalDampingParam(s6=0.0, s8=1.0, a1=0.0, a2=0.0))
    i, j = np.triu_indices(n, 1)
    r = np.linalg.norm(positions_bohr[i] - positions_bohr[j], axis=1)
    if cell_A is not None:
        inside = r < 0.9 * cut  # well inside the library's cutoff
        i, j, r = i[inside], j[inside], r[inside]
    c6 = -2.0 * np.asarray(pair6["additive pairwise energy"])[i, j] * r**6  # hartree bohr⁶
    c8 = -2.0 * np.asarray(pair8["additive pairwise energy"])[i, j] * r**8
    z = [atomic_numbers[s] for s in species]
    c6_out, c8_out, sd_out, radius_out = [], [], [], []
    for a in range(len(z)):
        for b in range(a, len(z)):
            mask = ((numbers[i] == z[a]) & (numbers[j] == z[b])) | ((numbers[i] == z[b]) & (numbers[j] == z[a]))
            if not mask.any():
                raise ValueError(f"d3_pair_coefficients: the structure has no {species[a]}-{species[b]} pair")
            m6, m8 = float(c6[mask].mean()), float(c8[mask].mean())
            c6_out.append(m6 * HARTREE_eV * BOHR_A**6)
            c8_out.append(m8 * HARTREE_eV * BOHR_A**8)
            sd_out.append(float(c6[mask].std()) * HARTREE_eV * BOHR_A**6)
            radius_out.append((a1 * np.sqrt(m8 / m6) + a2_bohr) * BOHR_A)
    return D3PairCoefficients(tuple(species), tuple(c6_out), tuple(c8_out), tuple(sd_out), tuple(radius_out))


def d3_pair_dispersion(parameters: D3Parameters, numbers: np.ndarray, positions_A: np.ndarray, species: list[str],
                       cell_A: np.ndarray | None = None, cutoff_A: float | None = None,
                       switch_on_A: float | None = None) -> tuple[PairDispersion, D3PairCoefficients]:
    """D3(BJ) with the coordination numbers of one structure frozen: a pair term a pair-table code can run.

    −(s6·C6/(r⁶ + R⁶) + s8·C8/(r⁸ + R⁸)) per species pair, C6 and C8 averaged over the structure's
    atom pairs (:func:`d3_pair_coefficients`), R = a1·√(C8/C6) + a2 and s6, s8 from ``parameters``.
    It leaves out how C6 follows each atom's coordination number (and the forces that follow from
    that) and the spread of C6 between sites of one species pair (``c6_sd_eV_A6``): compare its
    forces with the full term's on your frames before relying on it.

    Args:
        parameters: the D3(BJ) parameters (e.g. :func:`load_d3_parameters` of a refinement's ``refined_d3bj.json``).
        numbers, positions_A, species, cell_A: the structure, as for :func:`d3_pair_coefficients`.
        cutoff_A: where the pair term ends (default: the parameters' two-body cutoff); switch_on_A:
            where its smooth switch-off starts (default cutoff − 2 Å).
    """
    coefficients = d3_pair_coefficients(numbers, positions_A, species, parameters.a1, parameters.a2, cell_A)
    cutoff = float(parameters.cutoff_two_body_bohr) * BOHR_A if cutoff_A is None else float(cutoff_A)
    term = PairDispersion(species, cutoff, c6_eV_A6=list(coefficients.c6_eV_A6), c8_eV_A8=list(coefficients.c8_eV_A8),
                          damping_radius_A=list(coefficients.damping_radius_A), switch_on_A=switch_on_A,
                          trainable=False, s6=parameters.s6, s8=parameters.s8)
    return term.to(torch.float64), coefficients


__all__ = ["BOHR_A", "D3Dispersion", "D3Evaluation", "D3PairCoefficients", "D3Parameters", "HARTREE_eV",
           "D3_TRAINABLE", "DAMPING_STEPS", "PAIR_SAMPLE_A", "d3_ase_calculator", "d3_pair_coefficients",
           "d3_pair_dispersion", "load_d3_parameters", "periodic_surroundings", "save_d3_parameters"]
