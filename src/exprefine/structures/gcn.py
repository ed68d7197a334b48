"""Heptazine g-C3N4: layers, stacks, supercells, corrugation and carbon defects.

One hexagonal cell (60°, a1 = (a, 0, 0), a2 = (a/2, a√3/2, 0)) holds one heptazine
C6N7 and one bridging N: C6N8, 14 atoms. The fractional coordinates are those of a
GFN1-xTB-relaxed planar layer at a = 7.032 Å (see the design notes, SCIENCE.md).

Every builder returns ``ase.Atoms`` with two per-atom arrays:

- ``roles``: the crystallographic site of the ideal layer, one of :data:`ROLES`
  (``central_N``, ``edge_N``, ``bridging_N``, ``inner_C``, ``outer_C``). The role names
  the site, not the element: a carbon on a bridging site keeps ``bridging_N``.
- ``layer``: the layer index (0 at the bottom).

Defect variants add a boolean ``defect`` array (True where C replaced N).

Stackings (layer k of a stack at height k·d, fractional in-plane coordinates of the
primitive cell):

- ``"AB"``: odd layers shifted by (1/3, 1/3), as in graphite.
- ``"AA'"``: odd layers rotated by 180° about c through the heptazine centre,
  (s1, s2) → (−s1, −s2): heptazines eclipsed but inverted, bridging N over bridging-N-free
  hollow.
- ``"AA"``: all layers eclipsed.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from ase import Atoms

#: Default lattice constant of the hexagonal cell in Å (GFN1-xTB relaxed layer).
GCN_LATTICE_CONSTANT_A = 7.032

#: Site roles of the ideal layer.
ROLES = ("central_N", "edge_N", "bridging_N", "inner_C", "outer_C")

#: Stackings understood by :func:`gcn_stack`.
STACKINGS = ("AB", "AA'", "AA")

# (symbol, s1, s2, role) of the 14 atoms of one cell, fractional in a1, a2.
_LAYER_SITES: tuple[tuple[str, float, float, str], ...] = (
    ("N", 0.0000, 0.0000, "central_N"),
    ("C", 0.1129, 0.1129, "inner_C"),
    ("C", 0.7743, 0.1129, "inner_C"),
    ("C", 0.1129, 0.7743, "inner_C"),
    ("N", 0.0010, 0.3299, "edge_N"),
    ("N", 0.6690, 0.3299, "edge_N"),
    ("N", 0.6690, 0.0010, "edge_N"),
    ("N", 0.0010, 0.6690, "edge_N"),
    ("N", 0.3299, 0.6690, "edge_N"),
    ("N", 0.3299, 0.0010, "edge_N"),
    ("C", 0.7831, 0.4337, "outer_C"),
    ("C", 0.7831, 0.7831, "outer_C"),
    ("C", 0.4337, 0.7831, "outer_C"),
    ("N", 2.0 / 3.0, 2.0 / 3.0, "bridging_N"),
)

_ROLE_DTYPE = "<U10"


def hexagonal_cell(lattice_constant_A: float, c_A: float) -> np.ndarray:
    """[3, 3] lattice vectors as rows in Å: a1 = (a, 0, 0), a2 = (a/2, a√3/2, 0), a3 = (0, 0, c)."""
    a = float(lattice_constant_A)
    return np.array([[a, 0.0, 0.0], [0.5 * a, 0.5 * math.sqrt(3.0) * a, 0.0], [0.0, 0.0, c_A]])


def _layer_fractional(stacking: str, layer: int) -> np.ndarray:
    """[14, 2] in-plane fractional coordinates of layer ``layer`` of a stack, wrapped to [0, 1)."""
    s = np.array([[s1, s2] for _, s1, s2, _ in _LAYER_SITES])
    if layer % 2 == 1:
        if stacking == "AB":
            s = s + 1.0 / 3.0
        elif stacking == "AA'":
            s = -s
    return np.mod(s, 1.0)


def gcn_stack(
    n_layers: int = 2,
    stacking: str = "AB",
    interlayer_spacing_A: float = 3.25,
    lattice_constant_A: float = GCN_LATTICE_CONSTANT_A,
    supercell: Sequence[int] | Sequence[Sequence[int]] = (1, 1),
    vacuum_A: float | None = None,
    corrugation_amplitude_A: float = 0.0,
    corrugation_wavevector: Sequence[int] = (1, 0),
    corrugation_phase_rad: float = 0.0,
) -> Atoms:
    """Stack of planar or corrugated heptazine g-C3N4 layers, fully periodic.

    Args:
        n_layers: number of layers (≥ 1).
        stacking: one of :data:`STACKINGS`.
        interlayer_spacing_A: d, the z distance between consecutive layers, Å.
        lattice_constant_A: a of the primitive hexagonal cell, Å.
        supercell: in-plane repetition, (n1, n2) or a 2×2 integer matrix P whose rows give
            the new in-plane vectors in units of a1, a2 (A' = P·A).
        vacuum_A: None for a bulk crystal (c = n_layers·d; with "AB" or "AA'" this needs an
            even n_layers so that the stacking continues across the boundary); otherwise a
            slab with c = (n_layers − 1)·d + vacuum_A.
        corrugation_amplitude_A: amplitude h of a sinusoidal z displacement
            Δz = h·sin(2π(k1·t1 + k2·t2) + φ), (t1, t2) fractional in the *supercell*
            vectors, the same for every layer (layers stay parallel). 0 gives planar layers.
        corrugation_wavevector: integers (k1, k2); commensurate with the supercell by
            construction.
        corrugation_phase_rad: φ.

    Returns:
        Atoms with arrays ``roles`` and ``layer``, pbc all True, layer k at z = k·d + Δz
        (slab: z shifted by vacuum_A/2).
    """
    if n_layers < 1:
        raise ValueError(f"n_layers must be at least 1, got {n_layers}")
    if stacking not in STACKINGS:
        raise ValueError(f"unknown stacking {stacking!r}; use one of {STACKINGS}")
    if interlayer_spacing_A <= 0:
        raise ValueError(f"interlayer_spacing_A must be positive, got {interlayer_spacing_A}")
    if lattice_constant_A <= 0:
        raise ValueError(f"lattice_constant_A must be positive, got {lattice_constant_A}")
    if vacuum_A is None:
        if stacking != "AA" and n_layers % 2 == 1:
            raise ValueError(
                f"bulk {stacking} stacking needs an even n_layers, got {n_layers} (or give vacuum_A)"
            )
        c_A = n_layers * interlayer_spacing_A
        z0_A = 0.0
    else:
        if vacuum_A <= 0:
            raise ValueError(f"vacuum_A must be positive, got {vacuum_A}")
        c_A = (n_layers - 1) * interlayer_spacing_A + vacuum_A
        z0_A = 0.5 * vacuum_A

    symbols: list[str] = []
    frac: list[np.ndarray] = []
    roles: list[str] = []
    layers: list[int] = []
    for k in range(n_layers):
        s = _layer_fractional(stacking, k)
        z = (z0_A + k * interlayer_spacing_A) / c_A
        frac.append(np.column_stack([s, np.full(len(s), z)]))
        symbols += [sym for sym, _, _, _ in _LAYER_SITES]
        roles += [role for _, _, _, role in _LAYER_SITES]
        layers += [k] * len(_LAYER_SITES)

    atoms = Atoms(
        symbols=symbols,
        scaled_positions=np.concatenate(frac),
        cell=hexagonal_cell(lattice_constant_A, c_A),
        pbc=True,
    )
    atoms.arrays["roles"] = np.array(roles, dtype=_ROLE_DTYPE)
    atoms.arrays["layer"] = np.array(layers, dtype=int)
    atoms = in_plane_supercell(atoms, supercell)
    if corrugation_amplitude_A != 0.0:
        atoms = corrugate(atoms, corrugation_amplitude_A, corrugation_wavevector, corrugation_phase_rad)
    atoms.info["stacking"] = stacking
    atoms.info["interlayer_spacing_A"] = float(interlayer_spacing_A)
    return atoms


def gcn_layer(
    lattice_constant_A: float = GCN_LATTICE_CONSTANT_A,
    supercell: Sequence[int] | Sequence[Sequence[int]] = (1, 1),
    vacuum_A: float = 15.0,
    corrugation_amplitude_A: float = 0.0,
    corrugation_wavevector: Sequence[int] = (1, 0),
    corrugation_phase_rad: float = 0.0,
) -> Atoms:
    """One heptazine layer in a periodic cell with ``vacuum_A`` Å along c (see :func:`gcn_stack`)."""
    return gcn_stack(
        n_layers=1,
        stacking="AA",
        interlayer_spacing_A=1.0,
        lattice_constant_A=lattice_constant_A,
        supercell=supercell,
        vacuum_A=vacuum_A,
        corrugation_amplitude_A=corrugation_amplitude_A,
        corrugation_wavevector=corrugation_wavevector,
        corrugation_phase_rad=corrugation_phase_rad,
    )


def _supercell_matrix(supercell: Sequence[int] | Sequence[Sequence[int]]) -> np.ndarray:
    """[2, 2] integer matrix from (n1, n2) or a 2×2 nested sequence."""
    p = np.asarray(supercell)
    if p.shape == (2,):
        p = np.diag(p)
    if p.shape != (2, 2) or not np.all(np.equal(np.mod(p, 1), 0)):
        raise ValueError(f"supercell must be (n1, n2) or a 2x2 integer matrix, got {supercell!r}")
    p = p.astype(int)
    if round(np.linalg.det(p)) <= 0:
        raise ValueError(f"supercell matrix must have a positive determinant, got {p.tolist()}")
    return p


def in_plane_supercell(atoms: Atoms, supercell: Sequence[int] | Sequence[Sequence[int]]) -> Atoms:
    """Repeat ``atoms`` in the a1–a2 plane: new in-plane vectors A' = P·A, c unchanged.

    Per-atom arrays (``roles``, ``layer``, ...) are carried to every image; atoms are
    ordered image by image, each image in the original order.
    """
    p = _supercell_matrix(supercell)
    n_images = int(round(np.linalg.det(p)))
    p3 = np.eye(3, dtype=int)
    p3[:2, :2] = p
    new_cell = p3 @ np.asarray(atoms.cell)
    corners = np.array([[0, 0], p[0], p[1], p[0] + p[1]])
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    inv_p3 = np.linalg.inv(p3.astype(float))
    frac0 = atoms.get_scaled_positions(wrap=True)
    eps = 1e-9
    translations = []
    for i in range(lo[0], hi[0] + 1):
        for j in range(lo[1], hi[1] + 1):
            # an image belongs to the supercell when the image of the origin lies in [0, 1)²
            t = np.array([i, j, 0], dtype=float) @ inv_p3
            if np.all(t[:2] >= -eps) and np.all(t[:2] < 1.0 - eps):
                translations.append((i, j))
    if len(translations) != n_images:
        raise RuntimeError(f"found {len(translations)} lattice images for det P = {n_images}")
    frac_new = []
    for i, j in translations:
        frac_new.append((frac0 + np.array([i, j, 0.0])) @ inv_p3)
    frac_new = np.mod(np.concatenate(frac_new), 1.0)
    out = Atoms(
        numbers=np.tile(atoms.numbers, n_images),
        scaled_positions=frac_new,
        cell=new_cell,
        pbc=atoms.pbc,
    )
    for name, values in atoms.arrays.items():
        if name in ("numbers", "positions"):
            continue
        out.arrays[name] = np.concatenate([values] * n_images)
    out.info.update(atoms.info)
    return out


def corrugate(
    atoms: Atoms,
    amplitude_A: float,
    wavevector: Sequence[int] = (1, 0),
    phase_rad: float = 0.0,
) -> Atoms:
    """Copy of ``atoms`` with z += h·sin(2π(k1·t1 + k2·t2) + φ), (t1, t2) fractional in the cell.

    Integer (k1, k2) keep the displacement periodic (commensurate) with the cell.
    """
    k = np.asarray(wavevector)
    if k.shape != (2,) or not np.all(np.equal(np.mod(k, 1), 0)):
        raise ValueError(f"wavevector must be two integers, got {wavevector!r}")
    out = atoms.copy()
    t = out.get_scaled_positions(wrap=True)[:, :2]
    dz = amplitude_A * np.sin(2.0 * np.pi * (t @ k.astype(float)) + phase_rad)
    pos = out.get_positions()
    pos[:, 2] += dz
    out.set_positions(pos)
    out.info["corrugation_amplitude_A"] = float(amplitude_A)
    out.info["corrugation_wavevector"] = [int(x) for x in k]
    return out


def substitute_carbon(atoms: Atoms, indices: Sequence[int]) -> Atoms:
    """Copy of ``atoms`` with N → C at ``indices``; marks them in a boolean ``defect`` array."""
    out = atoms.copy()
    idx = np.asarray(indices, dtype=int)
    if idx.size and (idx.min() < 0 or idx.max() >= len(out)):
        raise IndexError(f"defect index out of range 0..{len(out) - 1}: {idx.tolist()}")
    if len(np.unique(idx)) != len(idx):
        raise ValueError(f"repeated defect index in {idx.tolist()}")
    symbols = out.get_chemical_symbols()
    for i in idx:
        if symbols[i] != "N":
            raise ValueError(f"atom {i} is {symbols[i]}, only N can be replaced by C")
    numbers = out.numbers.copy()
    numbers[idx] = 6
    out.numbers = numbers
    defect = out.arrays.get("defect", np.zeros(len(out), dtype=bool)).copy()
    defect[idx] = True
    out.arrays["defect"] = defect
    return out


def carbon_defects(
    atoms: Atoms,
    sites: str | Sequence[str] = ("central_N", "bridging_N"),
    n_defects: int | None = None,
    site_fraction: float | None = None,
    seed: int = 0,
    even_electrons: bool = True,
) -> Atoms:
    """Replace N by C on randomly chosen sites of the given roles.

    Give either ``n_defects`` or ``site_fraction`` (defects per candidate site, i.e. per
    N atom of the chosen roles; rounded to the nearest allowed integer). Each C on an N
    site removes one electron, so with ``even_electrons`` (default) the number of defects
    must be even — defects come in pairs and the closed-shell count of the pristine
    layer is kept.

    Args:
        atoms: a pristine structure with a ``roles`` array (from :func:`gcn_stack`).
        sites: a role or roles to draw from (``central_N``, ``bridging_N``, ``edge_N``).
        n_defects: number of substitutions.
        site_fraction: fraction of candidate sites substituted, in [0, 1].
        seed: seed of the random choice (numpy default_rng).
        even_electrons: require an even number of defects.

    Returns:
        Defected copy with ``defect`` array; info["n_carbon_defects"], info["defect_seed"].
    """
    if "roles" not in atoms.arrays:
        raise ValueError("atoms have no 'roles' array; build them with gcn_stack or gcn_layer")
    roles = (sites,) if isinstance(sites, str) else tuple(sites)
    for role in roles:
        if role not in ("central_N", "edge_N", "bridging_N"):
            raise ValueError(f"carbon can replace N sites only, got role {role!r}")
    candidates = np.flatnonzero(np.isin(atoms.arrays["roles"], roles) & (atoms.numbers == 7))
    if (n_defects is None) == (site_fraction is None):
        raise ValueError("give exactly one of n_defects and site_fraction")
    if site_fraction is not None:
        if not 0.0 <= site_fraction <= 1.0:
            raise ValueError(f"site_fraction must be in [0, 1], got {site_fraction}")
        target = site_fraction * len(candidates)
        n_defects = 2 * int(round(target / 2.0)) if even_electrons else int(round(target))
        if n_defects > len(candidates):
            n_defects -= 2
    assert n_defects is not None
    if n_defects < 0 or n_defects > len(candidates):
        raise ValueError(f"n_defects={n_defects} but only {len(candidates)} candidate sites of {roles}")
    if even_electrons and n_defects % 2:
        raise ValueError(f"n_defects={n_defects} is odd (odd electron count); use pairs or even_electrons=False")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(candidates, size=n_defects, replace=False))
    out = substitute_carbon(atoms, [int(k) for k in chosen])
    out.info["n_carbon_defects"] = int(n_defects)
    out.info["defect_seed"] = int(seed)
    return out


def bonded_neighbour_counts(atoms: Atoms, cutoff_A: float = 1.6) -> np.ndarray:
    """[n_atoms] number of neighbours closer than ``cutoff_A`` Å (minimum image via ASE)."""
    from ase.neighborlist import neighbor_list

    i = neighbor_list("i", atoms, cutoff_A)
    return np.bincount(i, minlength=len(atoms))
