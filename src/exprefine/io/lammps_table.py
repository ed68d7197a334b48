"""Pair terms as LAMMPS ``pair_style table`` files, and an ASE calculator that reads them back.

A refined correction made of pair terms (:class:`~exprefine.potentials.spline.PairSpline`,
:class:`~exprefine.potentials.dispersion.PairDispersion`, Lennard-Jones, ...) is written as
one table section per species pair (keyword ``C_N`` for the pair C–N of species [C, N]):

    N <n> R <r_lo> <r_c>
    (blank line)
    i  r  E(r)  F(r) = −dE/dr

on an even grid from ``r_lo`` to the cutoff r_c (E = F = 0 there). LAMMPS adds it to a
machine-learned model with ``pair_style hybrid/overlay`` (:func:`lammps_overlay_lines`). Pairs
closer than ``r_lo`` stop a LAMMPS run, so ``r_lo`` must lie below any distance the MD visits
(bonded pairs included; a spline is constant below its first knot, so the table carries that
constant there).

:class:`TabulatedPairCalculator` evaluates such a file in ASE with cubic Hermite interpolation
of E and F between the grid points (error O(h⁴)), so a table can be checked against the terms it
came from, or summed with a model's own ASE calculator (``ase.calculators.mixing.SumCalculator``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes
from ase.neighborlist import neighbor_list

from ..potentials.base import PairPotential, atomic_number


@dataclass
class PairTable:
    """One section of a table file: the interaction of one species pair on a grid.

    Attributes:
        keyword: section name (``C_N``).
        species: the two element symbols.
        r_A: [n] distances, ascending and evenly spaced, Å.
        energy_eV: [n] E(r), eV.
        force_eV_per_A: [n] F(r) = −dE/dr, eV/Å.
    """

    keyword: str
    species: tuple[str, str]
    r_A: np.ndarray
    energy_eV: np.ndarray
    force_eV_per_A: np.ndarray

    @property
    def cutoff_A(self) -> float:
        return float(self.r_A[-1])


def pair_keyword(a: str, b: str) -> str:
    """The section keyword of the species pair (a, b): ``"C_N"``."""
    return f"{a}_{b}"


def tabulate_pairs(
    terms: PairPotential | Sequence[PairPotential],
    species: Sequence[str],
    r_min_A: float = 0.5,
    n_points: int = 10000,
) -> list[PairTable]:
    """The sum of ``terms`` for every unordered pair of ``species``, on ``n_points`` from ``r_min_A`` to the cutoff.

    Args:
        terms: pair potentials; each contributes to the species pairs it knows.
        species: element symbols in LAMMPS type order (type 1 = ``species[0]``, …).
        r_min_A: first grid point (LAMMPS refuses pairs closer than this), Å.
        n_points: grid points per section.
    """
    terms = [terms] if isinstance(terms, PairPotential) else list(terms)
    if not terms:
        raise ValueError("no pair terms to tabulate")
    cutoff = max(float(t.cutoff_A) for t in terms)
    if not 0 < r_min_A < cutoff:
        raise ValueError(f"need 0 < r_min_A < cutoff ({cutoff} Å), got {r_min_A}")
    if n_points < 2:
        raise ValueError(f"n_points must be ≥ 2, got {n_points}")
    r = torch.linspace(r_min_A, cutoff, n_points, dtype=torch.float64)
    tables = []
    for i, a in enumerate(species):
        for b in species[i:]:
            rr = r.clone().requires_grad_(True)
            energy = torch.zeros_like(rr)
            for term in terms:
                pair = _pair_type(term, a, b)
                if pair is None:
                    continue
                inside = (rr < term.cutoff_A).to(rr.dtype)
                types = torch.full(rr.shape, pair, dtype=torch.long)
                energy = energy + inside * term.pair_energy(rr, types)
            (grad,) = torch.autograd.grad(energy.sum(), rr, allow_unused=True)
            force = torch.zeros_like(rr) if grad is None else -grad
            e, f = energy.detach().numpy().copy(), force.detach().numpy().copy()
            e[-1] = f[-1] = 0.0  # at the cutoff every term is zero (a spline's last knot, a switch)
            tables.append(PairTable(pair_keyword(a, b), (a, b), r.numpy().copy(), e, f))
    return tables


def _pair_type(term: PairPotential, a: str, b: str) -> int | None:
    numbers = term.species_numbers
    za, zb = atomic_number(a), atomic_number(b)
    if za not in numbers or zb not in numbers:
        return None
    ia, ib = torch.tensor([numbers.index(za)]), torch.tensor([numbers.index(zb)])
    return int(term.pair_index(ia, ib)[0])


def write_pair_table(path: str | Path, tables: Sequence[PairTable], comment: str = "") -> Path:
    """Write ``tables`` as a LAMMPS ``pair_style table`` file (metal units: Å, eV, eV/Å)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# {line}" for line in (comment or "pair table written by exprefine").splitlines()]
    lines.append("# units metal: r in Å, E in eV, F = -dE/dr in eV/Å")
    for t in tables:
        lines += ["", t.keyword, f"N {len(t.r_A)} R {t.r_A[0]:.10g} {t.r_A[-1]:.10g}", ""]
        lines += [f"{k + 1} {r:.10g} {e:.12e} {f:.12e}" for k, (r, e, f)
                  in enumerate(zip(t.r_A, t.energy_eV, t.force_eV_per_A))]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_pair_table(path: str | Path) -> dict[str, PairTable]:
    """The sections of a ``pair_style table`` file written with ``R`` (or no) grid keyword, by keyword."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"pair table not found: {path}")
    lines = [ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines()]
    tables: dict[str, PairTable] = {}
    k = 0
    while k < len(lines):
        if not lines[k]:
            k += 1
            continue
        keyword = lines[k]
        header = lines[k + 1].split() if k + 1 < len(lines) else []
        if len(header) < 2 or header[0] != "N":
            raise ValueError(f"{path}: section {keyword!r} has no 'N <n> ...' line")
        if "RSQ" in header or "BITMAP" in header:
            raise ValueError(f"{path}: section {keyword!r}: only tables on an r grid (R or none) are read")
        n = int(header[1])
        rows: list[list[float]] = []
        j = k + 2
        while len(rows) < n and j < len(lines):
            if lines[j]:
                rows.append([float(x) for x in lines[j].split()[1:4]])
            j += 1
        if len(rows) != n:
            raise ValueError(f"{path}: section {keyword!r} announces {n} points but holds {len(rows)}")
        data = np.array(rows)
        a, _, b = keyword.partition("_")
        tables[keyword] = PairTable(keyword, (a, b), data[:, 0], data[:, 1], data[:, 2])
        k = j
    return tables


def lammps_overlay_lines(
    model_style: str,
    model_file: str,
    species: Sequence[str],
    table_file: str,
    tables: Sequence[PairTable],
    n_table_points: int | None = None,
) -> str:
    """LAMMPS input lines that add the pair tables to a model's own pair style.

    Args:
        model_style: ``"deepmd"`` or ``"mace"`` (``pair_style mace no_domain_decomposition``).
        model_file: the model file LAMMPS loads (a frozen ``.pth`` for DeePMD, the
            ``*-lammps.pt`` made by ``mace.cli.create_lammps_model`` for MACE).
        species: element of each LAMMPS atom type, in type order.
        table_file: the table file as LAMMPS should open it.
        tables: the sections written to it.
        n_table_points: LAMMPS's internal table size (default: the file's points).
    """
    styles = {"deepmd": f"deepmd {model_file}", "mace": "mace no_domain_decomposition"}
    if model_style not in styles:
        raise ValueError(f"model_style must be one of {sorted(styles)}, got {model_style!r}")
    n = n_table_points or len(tables[0].r_A)
    elements = " ".join(species)
    lines = [f"pair_style hybrid/overlay {styles[model_style]} table spline {n}"]
    lines.append(f"pair_coeff * * deepmd {elements}" if model_style == "deepmd"
                 else f"pair_coeff * * mace {model_file} {elements}")
    lines += _table_coeff_lines(species, table_file, tables, "table ")
    return "\n".join(lines) + "\n"


def lammps_table_lines(
    species: Sequence[str],
    table_file: str,
    tables: Sequence[PairTable],
    n_table_points: int | None = None,
) -> str:
    """LAMMPS input lines that make the pair tables the whole pair style (``pair_style table spline N``).

    Args: as :func:`lammps_overlay_lines` (without a model). Under ``pair_style table`` alone,
    ``pair_coeff`` takes no style name: ``pair_coeff 1 2 file C_N cutoff``.
    """
    n = n_table_points or len(tables[0].r_A)
    lines = [f"pair_style table spline {n}", *_table_coeff_lines(species, table_file, tables, "")]
    return "\n".join(lines) + "\n"


def _table_coeff_lines(species: Sequence[str], table_file: str, tables: Sequence[PairTable], style: str) -> list[str]:
    """One ``pair_coeff I J [style ]file keyword cutoff`` line per table (I ≤ J, types in ``species`` order)."""
    lines = []
    for t in tables:
        i, j = species.index(t.species[0]) + 1, species.index(t.species[1]) + 1
        lines.append(f"pair_coeff {min(i, j)} {max(i, j)} {style}{table_file} {t.keyword} {t.cutoff_A:.10g}")
    return lines


class TabulatedPairCalculator(Calculator):
    """ASE calculator of pair tables: E = Σ_pairs E_ab(r), cubic Hermite interpolation of E and F.

    Args:
        table_file: a file written by :func:`write_pair_table` (or any ``R``-grid table file).
        keywords: optional map from an element pair ("C", "N") to its section keyword; by default
            the section ``A_B`` (or ``B_A``) serves the pair (A, B).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, table_file: str | Path, keywords: dict[tuple[str, str], str] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.tables = read_pair_table(table_file)
        self.keywords = dict(keywords or {})
        self.cutoff_A = max(t.cutoff_A for t in self.tables.values())

    def _table(self, a: str, b: str) -> PairTable | None:
        key = self.keywords.get((a, b)) or self.keywords.get((b, a))
        if key is None:
            key = pair_keyword(a, b) if pair_keyword(a, b) in self.tables else pair_keyword(b, a)
        return self.tables.get(key)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        i, j, d, vec = neighbor_list("ijdD", atoms, self.cutoff_A)
        keep = i < j
        i, j, d, vec = i[keep], j[keep], d[keep], vec[keep]
        symbols = np.array(atoms.get_chemical_symbols())
        energy = 0.0
        de_dr = np.zeros_like(d)
        for a in np.unique(symbols):
            for b in np.unique(symbols):
                mask = (symbols[i] == a) & (symbols[j] == b)
                if not mask.any():
                    continue
                table = self._table(a, b)
                if table is None:
                    continue
                e, de = _hermite(table, d[mask])
                energy += float(e.sum())
                de_dr[mask] = de
        pair_force = -(de_dr / np.maximum(d, 1e-300))[:, None] * vec  # force on j from i
        forces = np.zeros((len(atoms), 3))
        np.add.at(forces, j, pair_force)
        np.add.at(forces, i, -pair_force)
        self.results["energy"] = self.results["free_energy"] = energy
        self.results["forces"] = forces
        if atoms.cell.rank == 3 and all(atoms.pbc):
            virial = -(vec[:, :, None] * pair_force[:, None, :]).sum(axis=0)
            stress = virial / atoms.get_volume()
            self.results["stress"] = stress.flat[[0, 4, 8, 5, 2, 1]]


def _hermite(table: PairTable, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """E(r) and dE/dr by cubic Hermite interpolation; 0 at and beyond the last point."""
    grid = table.r_A
    h = float(grid[1] - grid[0])
    if r.size and float(r.min()) < grid[0]:
        raise ValueError(f"pair table {table.keyword}: a distance {float(r.min()):.4f} Å is below the table's "
                         f"first point {grid[0]:.4f} Å")
    x = (r - grid[0]) / h
    k = np.clip(np.floor(x).astype(int), 0, len(grid) - 2)
    t = x - k
    e0, e1 = table.energy_eV[k], table.energy_eV[k + 1]
    d0, d1 = -table.force_eV_per_A[k] * h, -table.force_eV_per_A[k + 1] * h
    t2, t3 = t * t, t * t * t
    e = (2 * t3 - 3 * t2 + 1) * e0 + (t3 - 2 * t2 + t) * d0 + (3 * t2 - 2 * t3) * e1 + (t3 - t2) * d1
    de = ((6 * t2 - 6 * t) * e0 + (3 * t2 - 4 * t + 1) * d0 + (6 * t - 6 * t2) * e1 + (3 * t2 - 2 * t) * d1) / h
    beyond = r >= grid[-1]
    return np.where(beyond, 0.0, e), np.where(beyond, 0.0, de)
