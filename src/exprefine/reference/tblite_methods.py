"""GFN1-xTB reference methods from tblite, a D3(BJ) helper, and a resumable extxyz labeller.

Two methods stand in for the pair "PBE" / "experiment" (design notes, SCIENCE.md):

- ``"truth"``: full GFN1-xTB (tblite's built-in parametrisation, which includes D3(BJ)).
- ``"label"``: GFN1-xTB with the ``dispersion`` block deleted from tblite's exported
  parameter table; everything else (Hamiltonian, repulsion, electrostatics) is unchanged,
  so E_truth − E_label is exactly tblite's D3(BJ) term.

:func:`d3_dispersion` evaluates that term with the ``dftd3`` package, using the damping
parameters read from tblite's GFN1 table (s6 = 1, s8 = 2.4, a1 = 0.63, a2 = 5.0 bohr,
s9 = 0: no three-body term) and tblite's real-space cutoffs (two-body 50 bohr, three-body
and coordination number 25 bohr, from tblite/disp/d3.f90).

Both methods run at Γ only, with Fermi smearing at ``electronic_temperature_K`` (300 K by
default) and a warm start: one calculator object reuses the previous wavefunction as the
guess while the atoms (numbers, pbc) stay the same; positions and cell may change.
Units: energies eV, forces eV/Å, stress eV/Å³ (ASE Voigt order xx, yy, zz, yz, xz, xy,
stress = (1/V) ∂E/∂ε).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from ase import Atoms

from ..potentials.dftd3 import D3Parameters

#: Method names understood by :func:`make_calculator` and :func:`label_frames`.
METHODS = ("label", "truth")

#: Real-space cutoffs of tblite's D3 in bohr (tblite/disp/d3.f90, tblite 0.8).
TBLITE_D3_CUTOFFS_BOHR = {"disp2": 50.0, "disp3": 25.0, "cn": 25.0}

_BOHR_A = 0.52917721090380  # CODATA 2018, as in ase.units
_HARTREE_eV = 27.211386245988  # CODATA 2018, as in ase.units

_parameter_cache: dict[str, dict[str, Any]] = {}


def gfn1_parameter_table(dispersion: bool = True) -> dict[str, Any]:
    """tblite's GFN1-xTB parametrisation as a nested dict (a fresh copy).

    Args:
        dispersion: keep the ``dispersion`` block (full GFN1-xTB); False deletes it.
    """
    import copy

    if "gfn1" not in _parameter_cache:
        from tblite import library

        param = library.new_param()
        library.export_gfn1_param(param)
        table = library.new_table()
        library.dump_param(param, table)
        _parameter_cache["gfn1"] = library.table_to_dict(table)
    table = copy.deepcopy(_parameter_cache["gfn1"])
    if not dispersion:
        table.pop("dispersion")
    return table


def gfn1_d3_parameters() -> dict[str, float]:
    """D3(BJ) damping parameters of GFN1-xTB as tblite holds them: s6, s8, a1, a2 (bohr), s9."""
    d3 = gfn1_parameter_table()["dispersion"]["d3"]
    parameters = {key: float(d3[key]) for key in ("s6", "s8", "a1", "a2")}
    parameters["s9"] = float(d3.get("s9", 0.0))
    return parameters


def gfn1_d3():
    """GFN1-xTB's D3(BJ) term as a :class:`~exprefine.potentials.dftd3.D3Parameters` (tblite's
    damping parameters and real-space cutoffs): the Potential that turns a "label"-level model
    into a "truth"-level one."""
    cut = TBLITE_D3_CUTOFFS_BOHR
    return D3Parameters(**gfn1_d3_parameters(), cutoff_two_body_bohr=cut["disp2"],
                        cutoff_three_body_bohr=cut["disp3"], cutoff_coordination_bohr=cut["cn"])


def tblite_method(method: str) -> str | dict[str, Any]:
    """The ``method`` argument for tblite: "GFN1-xTB" for "truth", the edited table for "label"."""
    if method == "truth":
        return "GFN1-xTB"
    if method == "label":
        return gfn1_parameter_table(dispersion=False)
    raise ValueError(f"unknown method {method!r}; use one of {METHODS}")


def make_calculator(
    method: str,
    electronic_temperature_K: float = 300.0,
    accuracy: float = 1.0,
    max_iterations: int = 250,
):
    """ASE calculator (``tblite.ase.TBLite``) for "label" or "truth".

    The calculator keeps its tblite objects between calls (``cache_api``), so consecutive
    frames with the same atoms start from the previous wavefunction.

    Args:
        method: "label" (no dispersion) or "truth" (full GFN1-xTB).
        electronic_temperature_K: Fermi smearing temperature, K.
        accuracy: tblite's accuracy factor (smaller is tighter; 1.0 is tblite's default).
        max_iterations: SCC iteration limit.
    """
    from tblite.ase import TBLite

    return TBLite(
        method=tblite_method(method),
        electronic_temperature=float(electronic_temperature_K),
        accuracy=float(accuracy),
        max_iterations=int(max_iterations),
        verbosity=0,
        cache_api=True,
    )


@dataclass
class D3Result:
    """Pairwise D3(BJ) dispersion of one structure.

    Attributes:
        energy_eV: dispersion energy, eV.
        forces_eV_per_A: [n_atoms, 3] forces, eV/Å.
        stress_eV_per_A3: [6] stress, Voigt (xx, yy, zz, yz, xz, xy), eV/Å³; None without pbc.
    """

    energy_eV: float
    forces_eV_per_A: np.ndarray
    stress_eV_per_A3: np.ndarray | None


def d3_dispersion(atoms: Atoms, parameters: dict[str, float] | None = None) -> D3Result:
    """D3(BJ) energy, forces and stress with the ``dftd3`` package and tblite's GFN1 setup.

    Args:
        atoms: structure (positions Å, cell Å).
        parameters: damping parameters s6, s8, a1, a2, s9; default :func:`gfn1_d3_parameters`.
    """
    from dftd3.interface import DispersionModel, RationalDampingParam

    par = gfn1_d3_parameters() if parameters is None else dict(parameters)
    periodic = np.asarray(atoms.pbc, dtype=bool)
    lattice = np.asarray(atoms.cell) / _BOHR_A if periodic.any() else None
    model = DispersionModel(
        np.asarray(atoms.numbers),
        np.asarray(atoms.positions) / _BOHR_A,
        lattice,
        periodic if periodic.any() else None,
    )
    cut = TBLITE_D3_CUTOFFS_BOHR
    model.set_realspace_cutoff(cut["disp2"], cut["disp3"], cut["cn"])
    res = model.get_dispersion(RationalDampingParam(**par), grad=True)
    forces = -np.asarray(res["gradient"]) * _HARTREE_eV / _BOHR_A
    stress = None
    if periodic.any():
        virial = np.asarray(res["virial"]) * _HARTREE_eV / atoms.get_volume()
        stress = virial.flat[[0, 4, 8, 5, 2, 1]].copy()
    return D3Result(float(res["energy"]) * _HARTREE_eV, forces, stress)


def make_d3_calculator():
    """ASE calculator (``dftd3.ase.DFTD3``) for the same D3(BJ) term as :func:`d3_dispersion`.

    Add it to a "label"-level model (e.g. with ``ase.calculators.mixing.SumCalculator``)
    to reach the "truth" level.
    """
    from dftd3.ase import DFTD3

    cut = {key: value * _BOHR_A for key, value in TBLITE_D3_CUTOFFS_BOHR.items()}
    return DFTD3(damping="d3bj", params_tweaks=gfn1_d3_parameters(), realspace_cutoff=cut)


# ----------------------------------------------------------------------------------------
# labelling with an on-disk cache


def frame_key(atoms: Atoms) -> str:
    """Identity of a frame: ``atoms.info["frame_id"]`` if set, else a hash of its geometry.

    The hash covers atomic numbers, positions and cell (rounded to 1e-6 Å) and pbc.
    """
    if "frame_id" in atoms.info:
        return f"id:{atoms.info['frame_id']}"
    h = hashlib.sha1()
    h.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
    for array in (atoms.positions, np.asarray(atoms.cell)):
        rounded = np.round(np.asarray(array, dtype=np.float64) * 1e6).astype(np.int64)
        h.update(rounded.tobytes())
    h.update(np.asarray(atoms.pbc, dtype=np.int8).tobytes())
    return "sha1:" + h.hexdigest()


@dataclass
class LabelRun:
    """Outcome of :func:`label_frames`.

    Attributes:
        frames: labelled frames in input order; energy (eV), forces (eV/Å) and stress
            (eV/Å³) on a SinglePointCalculator; info holds ``label_method``, ``frame_key``,
            ``electronic_temperature_K`` and ``label_wall_s`` (seconds of that call).
        n_computed: frames computed in this call.
        n_cached: frames taken from the cache.
        wall_s: seconds spent computing in this call.
    """

    frames: list[Atoms]
    n_computed: int
    n_cached: int
    wall_s: float


def _complete_prefix_bytes(path: Path) -> int:
    """Length in bytes of the complete extxyz frames at the start of ``path``.

    A frame is complete when its count line, comment line and all atom lines are there,
    each ending in a newline. A frame cut short by a kill is not.
    """
    good = 0
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            break
        header = data[pos:end].strip()
        if not header:
            pos = end + 1
            good = pos
            continue
        try:
            n_atoms = int(header)
        except ValueError:
            break
        cursor = end + 1
        for _ in range(n_atoms + 1):
            nxt = data.find(b"\n", cursor)
            if nxt < 0:
                return good
            cursor = nxt + 1
        pos = good = cursor
    return good


def read_label_cache(cache_path: str | os.PathLike, repair: bool = True) -> list[Atoms]:
    """Frames in an extxyz label cache, in file order.

    Args:
        cache_path: the cache file; a missing file reads as empty.
        repair: cut an incomplete last frame (left by a kill) off the file.
    """
    from ase.io import read

    path = Path(cache_path)
    if not path.exists():
        return []
    size = path.stat().st_size
    good = _complete_prefix_bytes(path)
    if good < size:
        if not repair:
            raise ValueError(f"{path} ends in an incomplete frame at byte {good}")
        with open(path, "r+b") as f:
            f.truncate(good)
    if good == 0:
        return []
    return list(read(path, index=":", format="extxyz"))


def _append_frame(path: Path, atoms: Atoms) -> None:
    """Append one frame to ``path`` in a single write, flushed and synced to disk."""
    import io

    from ase.io import write

    buffer = io.StringIO()
    write(buffer, atoms, format="extxyz")
    with open(path, "a", encoding="utf-8") as f:
        f.write(buffer.getvalue())
        f.flush()
        os.fsync(f.fileno())


def label_frames(
    frames: Iterable[Atoms],
    method: str,
    cache_path: str | os.PathLike,
    electronic_temperature_K: float = 300.0,
    accuracy: float = 1.0,
    progress: Callable[[int, int, Atoms], None] | None = None,
) -> LabelRun:
    """Label frames with "label" or "truth", writing each finished frame to an extxyz cache.

    Frames already in the cache (same :func:`frame_key`) are read back, never recomputed;
    the rest are computed in input order with one warm-started calculator and appended as
    soon as each is done, so a killed run resumes where it stopped. One cache holds one
    method at one electronic temperature.

    Args:
        frames: structures to label (their ``info``/``arrays`` are carried to the output).
        method: "label" or "truth".
        cache_path: extxyz file, created if missing.
        electronic_temperature_K: Fermi smearing temperature, K.
        accuracy: tblite accuracy factor.
        progress: optional callback(i, n_frames, labelled_frame) after each computed frame.
    """
    from ase.calculators.singlepoint import SinglePointCalculator

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {METHODS}")
    path = Path(cache_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = list(frames)
    cached: dict[str, Atoms] = {}
    for atoms in read_label_cache(path):
        if atoms.info.get("label_method") != method:
            raise ValueError(f"{path} holds labels of method {atoms.info.get('label_method')!r}, not {method!r}")
        temperature = float(atoms.info.get("electronic_temperature_K", float("nan")))
        if temperature != float(electronic_temperature_K):
            raise ValueError(f"{path} holds labels at {temperature} K, not {electronic_temperature_K} K")
        cached[str(atoms.info["frame_key"])] = atoms

    calc = None
    out: list[Atoms] = []
    n_computed = 0
    wall_s = 0.0
    for i, frame in enumerate(frames):
        key = frame_key(frame)
        if key in cached:
            out.append(cached[key])
            continue
        if calc is None:
            calc = make_calculator(method, electronic_temperature_K, accuracy)
        atoms = frame.copy()
        atoms.calc = calc
        t0 = time.perf_counter()
        energy = atoms.get_potential_energy()
        forces = atoms.get_forces()
        stress = atoms.get_stress() if atoms.pbc.any() else None
        dt = time.perf_counter() - t0
        wall_s += dt
        atoms.calc = None
        results = {"energy": energy, "forces": forces}
        if stress is not None:
            results["stress"] = stress
        atoms.calc = SinglePointCalculator(atoms, **results)
        atoms.info.update(
            label_method=method,
            frame_key=key,
            electronic_temperature_K=float(electronic_temperature_K),
            label_wall_s=float(dt),
        )
        _append_frame(path, atoms)
        cached[key] = atoms
        out.append(atoms)
        n_computed += 1
        if progress is not None:
            progress(i, len(frames), atoms)
    return LabelRun(out, n_computed, len(frames) - n_computed, wall_s)
