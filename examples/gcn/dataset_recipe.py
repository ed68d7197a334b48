"""The recipe of the g-C3N4 training set: seeded configurations and the MD exploration runs.

Seed configurations (stage ``seed`` of make_dataset.py). Frame i of a data set with seed s
is drawn from its own random stream ``numpy.random.default_rng([s, i])``, so it does not
depend on how many frames are asked for (asking for more frames later adds frames and
keeps the old ones). Each frame is a bulk bilayer (two layers per cell, c = 2d) built as:

1. stacking AB or AA' (equal odds), interlayer spacing d ~ U(2.9, 4.0) Å;
2. with probability 1/2 a commensurate corrugation of both layers, amplitude ~ U(0.05, 0.4) Å,
   wavevector (1,0), (0,1) or (1,1) of the supercell, random phase;
3. the upper layer slid in-plane by a random vector of length ≤ 0.5 Å (off-registry stacking);
4. carbon defects: pristine (40 %), a pair of C on central-N sites (20 %), a pair on
   bridging-N sites (20 %), or one of each (20 %). An even number of substitutions keeps the
   electron count even. The sites are one of ``n_defect_placements`` fixed random placements
   per kind, so many frames share their atoms (the labeller's warm start applies);
5. an in-plane strain: the cell and atoms are deformed by (1 + ε) with symmetric ε_xx, ε_yy,
   ε_xy ~ U(−0.02, 0.02);
6. a thermal rattle: every coordinate displaced independently by N(0, σ²) with
   σ = sqrt(k_B T / k_eff) (a classical Einstein oscillator), T ~ U(100, 1000) K and two
   effective force constants: in-plane (x, y) k_eff = 40 eV/Å², about the C–N bond-stretch
   constant, so that the bond-length fluctuations of independent displacements are near
   equipartition (σ_xy = 0.015, 0.025, 0.036, 0.046 Å at 100, 300, 600, 1000 K); out of plane
   (z) k_eff = 10 eV/Å², the soft bending of the sheets (σ_z = 0.029, 0.051, 0.072,
   0.093 Å). Softer in-plane rattles (one k_eff = 10 eV/Å² for all directions) compress
   C–N bonds to below 1.0 Å in a few per cent of 2×2 frames.

MD exploration (stage ``explore``): NVT runs of 2×2 bilayers — pristine and defected, AB and
AA', at a few spacings — at 100, 300, 600 and 1000 K, driven by the preliminary MACE model.
Runs are laid out round-robin over (system, temperature) so that any prefix of the run list
covers every temperature.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Sequence

import numpy as np
from ase import Atoms

from exprefine.structures import GCN_LATTICE_CONSTANT_A, carbon_defects, gcn_stack
from exprefine.units import BOLTZMANN_eV_per_K

#: Kinds of carbon substitution: (kind, sites of the two defects).
DEFECT_KINDS: dict[str, tuple[str, ...]] = {
    "pristine": (),
    "central_N": ("central_N", "central_N"),
    "bridging_N": ("bridging_N", "bridging_N"),
    "mixed": ("central_N", "bridging_N"),
}

CORRUGATION_WAVEVECTORS = ((1, 0), (0, 1), (1, 1))


def thermal_rattle_sigma_A(temperature_K: float, force_constant_eV_per_A2: float) -> float:
    """σ = sqrt(k_B T / k) in Å: the RMS displacement per Cartesian component of an Einstein
    oscillator of force constant k (eV/Å²) at temperature T (K), classically."""
    if temperature_K < 0 or not force_constant_eV_per_A2 > 0:
        raise ValueError("temperature_K must be ≥ 0 and force_constant_eV_per_A2 positive")
    return math.sqrt(BOLTZMANN_eV_per_K * temperature_K / force_constant_eV_per_A2)


def with_carbon_defects(atoms: Atoms, kind: str, placement: int) -> Atoms:
    """``atoms`` with the C-for-N pair of ``kind`` (see :data:`DEFECT_KINDS`) at placement ``placement``.

    The placement is the seed of the site choice: the same (kind, placement, cell) gives the
    same sites. Sets info["defect_kind"], ["defect_placement"], ["n_carbon_defects"].
    """
    if kind not in DEFECT_KINDS:
        raise ValueError(f"unknown defect kind {kind!r}; use one of {sorted(DEFECT_KINDS)}")
    out = atoms.copy()
    sites = DEFECT_KINDS[kind]
    if sites and sites[0] == sites[1]:
        out = carbon_defects(out, sites[0], n_defects=2, seed=placement)
    elif sites:
        for k, site in enumerate(sites):
            out = carbon_defects(out, site, n_defects=1, seed=1000 * placement + k, even_electrons=False)
    if "defect" not in out.arrays:
        out.arrays["defect"] = np.zeros(len(out), dtype=bool)
    out.info.pop("defect_seed", None)
    out.info.update(defect_kind=kind, defect_placement=int(placement) if sites else -1,
                    n_carbon_defects=len(sites))
    return out


# ------------------------------------------------------------------------------ seed frames
@dataclass(frozen=True)
class SeedRecipe:
    """Ranges and odds of the seed configurations (module docstring; lengths Å, temperatures K).

    Attributes:
        supercell: in-plane repetition (n1, n2) of the hexagonal cell.
        stackings: stackings drawn with equal odds.
        spacing_range_A: range of the interlayer spacing d.
        max_strain: bound of each in-plane strain component.
        temperature_range_K: range of the rattle temperature.
        force_constant_in_plane_eV_per_A2: k_eff of the x and y rattle.
        force_constant_out_of_plane_eV_per_A2: k_eff of the z rattle.
        corrugation_probability: odds of a corrugated frame.
        corrugation_range_A: range of the corrugation amplitude.
        max_layer_shift_A: bound of the in-plane slide of the upper layer.
        defect_odds: (kind, probability) pairs, probabilities summing to 1.
        n_defect_placements: fixed placements per defect kind.
        lattice_constant_A: a of the unstrained hexagonal cell.
    """

    supercell: tuple[int, int] = (2, 2)
    stackings: tuple[str, ...] = ("AB", "AA'")
    spacing_range_A: tuple[float, float] = (2.9, 4.0)
    max_strain: float = 0.02
    temperature_range_K: tuple[float, float] = (100.0, 1000.0)
    force_constant_in_plane_eV_per_A2: float = 40.0
    force_constant_out_of_plane_eV_per_A2: float = 10.0
    corrugation_probability: float = 0.5
    corrugation_range_A: tuple[float, float] = (0.05, 0.4)
    max_layer_shift_A: float = 0.5
    defect_odds: tuple[tuple[str, float], ...] = (("pristine", 0.4), ("central_N", 0.2), ("bridging_N", 0.2),
                                                   ("mixed", 0.2))
    n_defect_placements: int = 4
    lattice_constant_A: float = GCN_LATTICE_CONSTANT_A

    def __post_init__(self) -> None:
        if abs(sum(p for _, p in self.defect_odds) - 1.0) > 1e-9:
            raise ValueError("defect_odds must sum to 1")
        for kind, _ in self.defect_odds:
            if kind not in DEFECT_KINDS:
                raise ValueError(f"unknown defect kind {kind!r}")
        if self.n_defect_placements < 1:
            raise ValueError("n_defect_placements must be ≥ 1")

    def as_dict(self) -> dict:
        """Plain JSON-able values (tuples as lists)."""
        return json_ready(asdict(self))


def json_ready(value):
    """Tuples → lists, numpy scalars → Python numbers, recursively."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass
class SeedDraw:
    """The random choices of one seed frame (lengths Å, temperature K)."""

    stacking: str
    spacing_A: float
    corrugation_amplitude_A: float
    corrugation_wavevector: tuple[int, int]
    corrugation_phase_rad: float
    layer_shift_A: tuple[float, float]
    defect_kind: str
    defect_placement: int
    strain: tuple[float, float, float]
    temperature_K: float
    rattle_sigma_in_plane_A: float
    rattle_sigma_out_of_plane_A: float


def draw_seed(recipe: SeedRecipe, seed: int, index: int) -> SeedDraw:
    """The choices of frame ``index`` from the stream ``default_rng([seed, index])``."""
    rng = np.random.default_rng([int(seed), int(index)])
    stacking = recipe.stackings[int(rng.integers(len(recipe.stackings)))]
    spacing = float(rng.uniform(*recipe.spacing_range_A))
    corrugated = bool(rng.random() < recipe.corrugation_probability)
    amplitude = float(rng.uniform(*recipe.corrugation_range_A))
    wavevector = CORRUGATION_WAVEVECTORS[int(rng.integers(len(CORRUGATION_WAVEVECTORS)))]
    phase = float(rng.uniform(0.0, 2.0 * math.pi))
    angle = float(rng.uniform(0.0, 2.0 * math.pi))
    length = float(recipe.max_layer_shift_A * math.sqrt(rng.random()))  # uniform over the disc
    kinds = [k for k, _ in recipe.defect_odds]
    kind = kinds[int(rng.choice(len(kinds), p=[p for _, p in recipe.defect_odds]))]
    placement = int(rng.integers(recipe.n_defect_placements))
    strain = tuple(float(x) for x in rng.uniform(-recipe.max_strain, recipe.max_strain, size=3))
    temperature = float(rng.uniform(*recipe.temperature_range_K))
    return SeedDraw(
        stacking=stacking,
        spacing_A=spacing,
        corrugation_amplitude_A=amplitude if corrugated else 0.0,
        corrugation_wavevector=wavevector,
        corrugation_phase_rad=phase if corrugated else 0.0,
        layer_shift_A=(length * math.cos(angle), length * math.sin(angle)),
        defect_kind=kind,
        defect_placement=placement if kind != "pristine" else -1,
        strain=strain,  # type: ignore[arg-type]
        temperature_K=temperature,
        rattle_sigma_in_plane_A=thermal_rattle_sigma_A(temperature, recipe.force_constant_in_plane_eV_per_A2),
        rattle_sigma_out_of_plane_A=thermal_rattle_sigma_A(temperature,
                                                           recipe.force_constant_out_of_plane_eV_per_A2),
    )


def strain_cell(atoms: Atoms, strain: Sequence[float]) -> Atoms:
    """Copy deformed by F = 1 + ε, ε = [[ε_xx, ε_xy, 0], [ε_xy, ε_yy, 0], [0, 0, 0]] (cell and atoms)."""
    exx, eyy, exy = strain
    deformation = np.eye(3) + np.array([[exx, exy, 0.0], [exy, eyy, 0.0], [0.0, 0.0, 0.0]])
    out = atoms.copy()
    out.set_cell(np.asarray(atoms.cell) @ deformation.T, scale_atoms=True)
    return out


def build_seed_frame(recipe: SeedRecipe, seed: int, index: int) -> Atoms:
    """Seed frame ``index`` (module docstring, steps 1–6); info records every choice."""
    d = draw_seed(recipe, seed, index)
    atoms = gcn_stack(
        2, d.stacking, d.spacing_A, lattice_constant_A=recipe.lattice_constant_A, supercell=recipe.supercell,
        corrugation_amplitude_A=d.corrugation_amplitude_A, corrugation_wavevector=d.corrugation_wavevector,
        corrugation_phase_rad=d.corrugation_phase_rad,
    )
    upper = atoms.arrays["layer"] == 1
    atoms.positions[upper, :2] += np.asarray(d.layer_shift_A)
    atoms = with_carbon_defects(atoms, d.defect_kind, max(d.defect_placement, 0))
    atoms = strain_cell(atoms, d.strain)
    rng = np.random.default_rng([int(seed), int(index), 1])
    sigma_A = np.array([d.rattle_sigma_in_plane_A, d.rattle_sigma_in_plane_A, d.rattle_sigma_out_of_plane_A])
    atoms.positions += rng.normal(size=atoms.positions.shape) * sigma_A
    atoms.wrap()
    atoms.info.update(
        frame_kind="seed",
        seed_index=int(index),
        dataset_seed=int(seed),
        supercell=list(recipe.supercell),
        layer_shift_A=list(d.layer_shift_A),
        strain_xx_yy_xy=list(d.strain),
        rattle_temperature_K=d.temperature_K,
        rattle_sigma_in_plane_A=d.rattle_sigma_in_plane_A,
        rattle_sigma_out_of_plane_A=d.rattle_sigma_out_of_plane_A,
    )
    if d.corrugation_amplitude_A == 0.0:
        atoms.info["corrugation_amplitude_A"] = 0.0
    return atoms


def seed_frames(recipe: SeedRecipe, seed: int, n_frames: int, start: int = 0) -> list[Atoms]:
    """Seed frames ``start`` … ``start + n_frames − 1``."""
    return [build_seed_frame(recipe, seed, i) for i in range(start, start + n_frames)]


# ------------------------------------------------------------------------------- wide frames
#: Frame indices of the wide stage start here, so their random streams never meet the seed stage's.
WIDE_INDEX_OFFSET = 1_000_000


def wide_recipe(recipe: SeedRecipe, spacing_range_A: tuple[float, float] = (4.0, 8.0)) -> SeedRecipe:
    """The seed recipe with the layers pulled apart: d ~ U(4, 8) Å by default.

    Seed and MD frames stop at d ≈ 4 Å, so a model trained on them alone does not know
    that the energy levels off as the layers separate (its binding curve may turn down
    again beyond the data). These frames carry the energy out to separated layers (beyond
    the 5.5–6 Å cutoffs the two layers no longer see each other).
    """
    return replace(recipe, spacing_range_A=tuple(spacing_range_A))


def wide_frames(recipe: SeedRecipe, seed: int, n_frames: int, start: int = 0) -> list[Atoms]:
    """Wide-spacing frames ``start`` … ``start + n_frames − 1`` (streams from WIDE_INDEX_OFFSET on)."""
    frames = seed_frames(recipe, seed, n_frames, WIDE_INDEX_OFFSET + start)
    for atoms in frames:
        atoms.info["frame_kind"] = "wide"
    return frames


# ----------------------------------------------------------------------------- exploration
@dataclass(frozen=True)
class ExploreSystem:
    """A start structure of the MD exploration: a bulk bilayer (lengths Å)."""

    name: str
    stacking: str
    spacing_A: float
    defect_kind: str = "pristine"
    placement: int = 0


#: Default exploration systems: pristine and defected, AB and AA', around the label
#: method's own spacing (3.63 Å) and compressed towards the measured one (3.22–3.25 Å).
EXPLORE_SYSTEMS: tuple[ExploreSystem, ...] = (
    ExploreSystem("AB-pristine-d3.60", "AB", 3.60),
    ExploreSystem("AB-centralC2-d3.45", "AB", 3.45, "central_N", 0),
    ExploreSystem("AAp-pristine-d3.45", "AA'", 3.45),
    ExploreSystem("AB-bridgingC2-d3.45", "AB", 3.45, "bridging_N", 1),
    ExploreSystem("AB-pristine-d3.30", "AB", 3.30),
    ExploreSystem("AAp-mixedC2-d3.45", "AA'", 3.45, "mixed", 2),
)

#: Default exploration temperatures, K (the range of the user's ab-initio MD).
EXPLORE_TEMPERATURES_K: tuple[float, ...] = (100.0, 300.0, 600.0, 1000.0)


def explore_start(system: ExploreSystem, supercell: tuple[int, int],
                  lattice_constant_A: float = GCN_LATTICE_CONSTANT_A) -> Atoms:
    """The ideal (planar, unstrained, not rattled) start structure of ``system``."""
    atoms = gcn_stack(2, system.stacking, system.spacing_A, lattice_constant_A=lattice_constant_A,
                      supercell=supercell)
    atoms = with_carbon_defects(atoms, system.defect_kind, system.placement)
    atoms.info.update(frame_kind="explore", explore_system=system.name, supercell=list(supercell))
    return atoms


@dataclass(frozen=True)
class ExploreRun:
    """One MD run of the exploration: a system at a temperature, repeat ``repeat``."""

    run_id: str
    system: ExploreSystem
    temperature_K: float
    repeat: int
    n_frames: int
    seed: int


def explore_runs(
    n_frames_total: int,
    frames_per_run: int,
    systems: Sequence[ExploreSystem] = EXPLORE_SYSTEMS,
    temperatures_K: Sequence[float] = EXPLORE_TEMPERATURES_K,
    seed: int = 0,
) -> list[ExploreRun]:
    """ceil(n_frames_total / frames_per_run) runs, round-robin over (system, temperature).

    Run r takes the combination r mod (n_systems · n_temperatures) with the temperature
    changing fastest, and repeat r div that number; its MD seed is derived from (seed, r).
    """
    if frames_per_run < 1 or n_frames_total < 0:
        raise ValueError("frames_per_run must be ≥ 1 and n_frames_total ≥ 0")
    combos = [(s, float(t)) for s in systems for t in temperatures_K]
    n_runs = -(-n_frames_total // frames_per_run)
    runs = []
    for r in range(n_runs):
        system, temperature = combos[r % len(combos)]
        repeat = r // len(combos)
        run_id = f"{r:03d}_{system.name}_T{temperature:04.0f}K_r{repeat}"
        run_seed = int(np.random.SeedSequence([int(seed), r]).generate_state(1)[0])
        runs.append(ExploreRun(run_id, system, temperature, repeat, frames_per_run, run_seed))
    return runs


__all__ = ["DEFECT_KINDS", "EXPLORE_SYSTEMS", "EXPLORE_TEMPERATURES_K", "ExploreRun", "ExploreSystem", "SeedDraw",
           "SeedRecipe", "build_seed_frame", "draw_seed", "explore_runs", "explore_start", "json_ready",
           "seed_frames", "strain_cell", "thermal_rattle_sigma_A", "wide_frames", "wide_recipe", "with_carbon_defects",
           "WIDE_INDEX_OFFSET"]
