"""Compare refinement strategies of g-C3N4 on the same data and budget (issue 16): one table, one JSON.

Every strategy config (``strategy_*.yaml``) refines a start model against the 6-layer synthetic
neutron S(Q)/G(r) (``data/layers6/``), made by the base DeePMD + GFN1's D3(BJ) — the reference.
Each model (the base first) is measured the same way, with every MD run cached under
``--out``/md (an interrupted study continues where it stopped):

1. **Structure check**: NPT (300 K, 1 bar, c free) on the truth's 336-atom cell, ``--check-ps``
   of production: χ² per point of each target (the data's σ), interlayer spacing d and density.
2. **Held-out label frames** (the data set's test split): forces and energies against the labels,
   the GFN1-xTB truth (labels + D3, exact) and the reference potential.
3. **Cell sizes** (AB bilayers 2×2 … 8×4, NPT): forces, stress and mean-removed energies against the
   reference on the reference's own MD frames and on the model's own MD frames
   (:mod:`exprefine.closed_loop`).
4. **Binding curve** E(d) of rigid ideal layers (2×2 bilayer): binding energy and d_min next to the
   reference's (:mod:`exprefine.binding_curve`).

The reference's structure check is the NPT run that defined the synthetic truth
(``results/synthetic6_work/npt.pt``, 6 ps; ``synthetic_experiment.py``), not a second run.

Outputs in ``--out`` (default ``results/strategies/``): ``<name>.json`` per model, and
``strategies.json`` / ``strategies.md`` / ``strategies.png`` over all of them; ``strategies.json``
is also copied to the folder above (``results/strategies.json``, the file the issue names).

    export OMP_NUM_THREADS=1
    python examples/gcn/strategies.py                       # every strategy whose run exists
    python examples/gcn/strategies.py --only base c_dispersion   # some models (another process can do others)
    python examples/gcn/strategies.py --smoke               # seconds: a tiny version of every stage
    python examples/gcn/strategies.py --only g_d3_prior --long-check-ps 20   # a 20-ps structure check (resumable)
    python examples/gcn/strategies.py --only g2_long_polish --long-check-ps 20 --long-check-seed 202   # G2 fitted on seed 201

A 5-ps check scatters: its halves differ by ≈ 0.02 Å in d and its G(r) χ² is dominated by the run's
own noise (the reference scores 12.8 on data it generated). ``--long-check-ps`` runs only the
structure check of the named models, longer and in resumable 1-ps segments, and writes d and χ²
of the whole run and of each half to ``long_checks.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from common import setup

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_SIZES = ("2x2", "4x2", "4x4", "8x4")
#: name, config, what it is; the base model is measured first
STRATEGIES = (
    ("a_fitting", "strategy_a_fitting.yaml", "A: DeePMD fitting net, λ = 10³"),
    ("b_spline", "strategy_b_spline.yaml", "B: base + pair splines 3–10 Å"),
    ("c_dispersion", "strategy_c_dispersion.yaml", "C: base + pair dispersion C6/C8"),
    ("d_fitting_labels", "strategy_d_fitting_labels.yaml", "D: DeePMD fitting net, λ = 10⁴"),
    ("e_mace_d3_prior", "strategy_e_mace_d3_prior.yaml", "E: base MACE + D3(BJ), PBE damping, s6/s8 with D3's priors"),
    ("c2_dispersion_prior", "strategy_c2_dispersion_prior.yaml", "C2: base + pair dispersion of D3's shape, s6/s8"),
    ("f_d3_scales", "strategy_f_d3_scales.yaml", "F: base + D3(BJ) with PBE damping, s6/s8"),
    ("f1_d3_s8", "strategy_f1_d3_s8.yaml", "F′: base + D3(BJ) with PBE damping, s6 = 1, s8"),
    ("g_d3_prior", "strategy_g_d3_prior.yaml", "G: base + D3(BJ) with PBE damping, s6/s8 with D3's priors"),
    ("h_d3_damping", "strategy_h_d3_damping.yaml", "H: base + D3(BJ), s6/s8/a1/a2 with D3's priors"),
    ("g2_long_polish", "strategy_g2_long_polish.yaml", "G2: G refitted on its own 20-ps check (400 frames)"),
    ("h2_long_polish", "strategy_h2_long_polish.yaml", "H2: H refitted on its own 20-ps check (400 frames)"),
    ("g3_long_polish", "strategy_g3_long_polish.yaml", "G3: G2 refitted on its own 20-ps check (seed 202, 1-kT steps)"),
    ("h3_long_polish", "strategy_h3_long_polish.yaml", "H3: H2 refitted on its own 20-ps check (seed 202, 1-kT steps)"),
)
#: the cache files (``md/<this>_<size>.pt``) of the generator's MD of each bilayer, on which every model is scored
GENERATOR_FRAMES = "reference_deepmd"
#: the reference's own NPT run on the truth's cell (synthetic_experiment.py --layers 6): its structure check
REFERENCE_CHECK = HERE / "results" / "synthetic6_work" / "npt.pt"
BASE_CONFIG = "strategy_a_fitting.yaml"  # its potential, cell, targets and label data define the base entry
MACE_CONFIG = "strategy_e_mace_d3_prior.yaml"  # its first term is the base MACE of the base_mace entry


@dataclass
class Protocol:
    """How every model is measured (the same for all of them)."""

    check_equilibration_ps: float = 1.0
    check_ps: float = 5.0
    check_frame_interval_fs: float = 50.0
    size_equilibration_ps: float = 1.0
    size_production_ps: float = 1.0
    size_frame_interval_fs: float = 125.0
    sizes: tuple[str, ...] = DEFAULT_SIZES
    #: the sizes at which each model also runs its own MD (None: all); elsewhere only the reference's frames
    own_md_sizes: tuple[str, ...] | None = None
    binding_spacings_A: tuple[float, ...] = (2.8, 2.9, 3.0, 3.1, 3.2, 3.3, 3.4, 3.5, 3.6, 3.8, 4.0, 4.3, 4.7, 5.5, 7.0)
    held_out_frames: int | None = None  # all of the test split


@dataclass
class Entry:
    """One model of the comparison (see the module docstring for every figure)."""

    name: str
    description: str
    model_files: list[str]
    reference: str
    status: str
    n_updates: int | None = None
    refinement_wall_time_s: float | None = None
    check: dict = field(default_factory=dict)
    held_out: dict = field(default_factory=dict)
    sizes: dict = field(default_factory=dict)
    binding: dict = field(default_factory=dict)
    label_force_rmse_meV_per_A: float | None = None
    sq_low_q_chi2_per_point: float | None = None
    chosen: bool = False
    #: the longer structure check of ``--long-check-ps`` (the whole run's d, density, χ²), where one ran
    long_check: dict = field(default_factory=dict)
    #: each of the issue's goals met or not (:func:`goals`; empty for the base, the reference and unfinished runs)
    goals: dict = field(default_factory=dict)


def relative(path: Path) -> str:
    """``path`` relative to the repository (results record no machine's absolute paths)."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


# ------------------------------------------------------------------------------ the models
def load_config(name: str, overrides: list[str] | None = None):
    from exprefine.config import load_config as load

    return load(HERE / name, overrides)


def smoke_run_dir(args, name: str) -> list[str]:
    """In smoke mode every run dir (where the data split is written) lies under ``--out``."""
    return [f"run_dir={args.out.resolve() / 'runs' / name}"] if args.smoke else []


def build_potential(cfg):
    from exprefine.builders import build_potential as build

    return build(cfg)


def refined_potential(cfg):
    """The config's potential with the run's parameters: ``final_model.pt``, else the latest checkpoint.

    Returns (potential, status, n_updates, wall_time_s); status says whether the run finished.
    """
    from exprefine.builders import build_potential, load_potential_state
    from exprefine.io.checkpoint import full_state, load_checkpoint

    potential = build_potential(cfg)
    run = Path(cfg.run_dir)
    final, latest = run / "final_model.pt", run / "checkpoints" / "latest.pt"
    if final.exists():
        load_potential_state(potential, final)
        summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
        return potential, "finished", summary.get("n_updates"), summary.get("wall_time_s")
    if latest.exists():
        data = load_checkpoint(latest)
        potential.load_state_dict(full_state(potential, data["potential_state"], latest))
        return potential, f"in progress ({data['next_update']} of {cfg.refine.n_updates} updates)", \
            int(data["next_update"]), None
    return potential, "not run (start parameters)", 0, None


def model_files(cfg) -> list[str]:
    """The files a user would load: the refined native model and the pair table, where written."""
    run = Path(cfg.run_dir)
    names = ("refined_deepmd.pth", "refined.model", "refined_pairs.table", "refined_pairs.lammps", "refined_d3bj.json")
    return [relative(run / n) for n in names if (run / n).exists()]


def base_and_reference(cfg):
    """(base model, reference = base + GFN1's D3(BJ), the base's file) of a config's first term."""
    from exprefine.potentials import D3Dispersion, SumPotential, load_model_file
    from exprefine.reference import gfn1_d3

    term = cfg.potential.terms[0]
    path = Path(getattr(term, "checkpoint_file", None) or term.model_file)
    base = load_model_file(path)
    return base, SumPotential([load_model_file(path), D3Dispersion(gfn1_d3())]), path


# ------------------------------------------------------------------------------ the stages
def md_settings(protocol: Protocol, kind: str, seed: int, smoke: bool):
    from exprefine.sampling import settings_from_times

    if kind == "check":
        eq, prod, interval = protocol.check_equilibration_ps, protocol.check_ps, protocol.check_frame_interval_fs
    else:
        eq, prod, interval = protocol.size_equilibration_ps, protocol.size_production_ps, protocol.size_frame_interval_fs
    if smoke:
        eq, prod, interval = 0.01, 0.02, 10.0
    return settings_from_times(temperature_K=300.0, timestep_fs=1.0, equilibration_ps=eq, production_ps=prod,
                               frame_interval_fs=interval, friction_per_ps=5.0, seed=seed, pressure_bar=1.0,
                               barostat_coupling="uniaxial_z")


def structure_check(cfg, potential, protocol: Protocol, md_dir: Path, name: str, smoke: bool,
                    trajectory_file: Path | None = None, suffix: str = "", seed: int = 101,
                    segment_ps: float | None = None) -> dict:
    """χ² per point of every target, d and density on a fresh NPT run from the truth's cell
    (or on the frames of ``trajectory_file``, a run made before with this potential). The run is
    cached as ``md_dir/<name>_check<suffix>.pt``; with ``segment_ps`` it goes in resumable segments."""
    from exprefine.builders import build_state
    from exprefine.sampling import SimulationBlowUp, sample_or_load, segment_steps_of
    from exprefine.trajectory import Trajectory

    if trajectory_file is not None:
        return structure_metrics(cfg, Trajectory.load(trajectory_file), None, relative(trajectory_file))
    path = md_dir / f"{name}_check{suffix}.pt"
    settings = md_settings(protocol, "check", seed, smoke)
    segment_steps = None if segment_ps is None else segment_steps_of(settings, segment_ps)
    try:
        run = sample_or_load(potential, build_state(cfg), settings, path, progress=not smoke,
                             segment_steps=segment_steps, log=print)
    except SimulationBlowUp as exc:  # a result too: the model is not usable for MD
        return {"d_A": None, "d_se_A": None, "density_g_per_cm3": None, "density_se_g_per_cm3": None,
                "n_frames": 0, "md_steps_per_s": None, "trajectory_file": None, "chi2_per_point": {},
                "blew_up": str(exc)}
    return structure_metrics(cfg, run.trajectory, run.steps_per_s, relative(path))


def structure_metrics(cfg, trajectory, speed: float | None, source: str) -> dict:
    """d, density (block SE) and every target's χ² per point (the data's σ) on ``trajectory``."""
    from common import spacing_and_density
    from exprefine.builders import build_targets
    from exprefine.observables import CellTooSmall

    layers = n_layers(cfg)
    d, d_se, rho, rho_se = spacing_and_density(trajectory, layers)
    out = {"d_A": d, "d_se_A": d_se, "density_g_per_cm3": rho, "density_se_g_per_cm3": rho_se,
           "n_frames": trajectory.n_frames, "md_steps_per_s": speed, "trajectory_file": source,
           "chi2_per_point": {}}
    for target in build_targets(cfg):
        try:
            values = target.observable.evaluate(trajectory).double().mean(dim=0)
        except CellTooSmall as exc:
            out["chi2_per_point"][target.name] = None
            out.setdefault("notes", []).append(f"{target.name}: {exc}")
            continue
        out["chi2_per_point"][target.name] = float((target.deviation(values) ** 2).mean())
    return out


#: the seed of every long check unless a model was fitted to another model's long check (then another)
LONG_CHECK_SEED = 201


def long_check(model, protocol: Protocol, out_dir: Path, production_ps: float, smoke: bool,
               seed: int = LONG_CHECK_SEED) -> dict:
    """A longer structure check than the table's (own seed, resumable 1-ps segments): d and χ² over the
    whole run and over each half (how much a run of half the length scatters). Merged into
    ``out_dir/long_checks.json``. A ``seed`` other than :data:`LONG_CHECK_SEED` is named in the files."""
    from dataclasses import replace

    from exprefine.trajectory import Trajectory

    longer = replace(protocol, check_ps=production_ps)
    suffix = ("_smoke" if smoke else f"{production_ps:g}ps") + ("" if seed == LONG_CHECK_SEED else f"_seed{seed}")
    whole = structure_check(model.cfg, model.potential, longer, out_dir / "md", model.name, smoke, suffix=suffix,
                            seed=seed, segment_ps=0.01 if smoke else 1.0)
    record = {"name": model.name, "production_ps": production_ps, "equilibration_ps": longer.check_equilibration_ps,
              "seed": seed, "whole": whole}
    if whole.get("trajectory_file"):
        trajectory = Trajectory.load(REPO / whole["trajectory_file"])
        half = trajectory.n_frames // 2
        record["first_half"] = structure_metrics(model.cfg, trajectory.select(slice(0, half)), None, "first half")
        record["second_half"] = structure_metrics(model.cfg, trajectory.select(slice(half, None)), None, "second half")
    path = out_dir / "long_checks.json"
    records = [r for r in (json.loads(path.read_text()) if path.exists() else []) if r["name"] != model.name]
    path.write_text(json.dumps([*records, record], indent=1) + "\n")
    parts = [(k, record[k]) for k in ("whole", "first_half", "second_half") if k in record]
    for label, m in parts:
        chi2 = " / ".join(f"{v:.2f}" if v is not None else "—" for v in m["chi2_per_point"].values())
        d = "—" if m["d_A"] is None else f"{m['d_A']:.4f} ± {m['d_se_A']:.4f}"
        print(f"{model.name} {label}: {m['n_frames']} frames, d = {d} Å, χ² per point {chi2}", flush=True)
    return record


def n_layers(cfg) -> int:
    """Layers of the config's cell (``n_layers`` in the extxyz written by synthetic_experiment.py)."""
    from ase.io import read

    atoms = read(cfg.system.structure_file)
    return int(atoms.info.get("n_layers") or len(set(atoms.arrays["layer"].tolist())))


def held_out_set(cfg, protocol: Protocol):
    """The label data set's test split (the frames no strategy trained on), from a config with a ``dft`` section."""
    from exprefine.builders import build_dft_split

    test = build_dft_split(cfg).test
    if protocol.held_out_frames is not None:
        test = test.subset(list(range(min(protocol.held_out_frames, test.n_frames))))
    return test


def held_out_errors(test, potential, reference) -> dict:
    """Forces (meV/Å) and energies (meV/atom) on the held-out frames vs labels, truth and reference."""
    from exprefine.closed_loop import compare_to_reference
    from exprefine.data import add_term_to_labels, evaluate_dft_errors
    from exprefine.potentials import D3Dispersion
    from exprefine.reference import gfn1_d3

    truth = add_term_to_labels(test, D3Dispersion(gfn1_d3()), source="label + D3 (truth)")
    out = {"n_frames": test.n_frames}
    for key, data in (("label", test), ("truth", truth)):
        e = evaluate_dft_errors(potential, data, batch_size=8)
        out[f"vs_{key}"] = {"force_rmse_meV_per_A": e.force_rmse_meV_per_A,
                            "energy_rmse_meV_per_atom": e.energy_rmse_meV_per_atom,
                            "energy_sd_meV_per_atom": e.energy_sd_meV_per_atom}
    frames = test.to_atoms()
    e = compare_to_reference({"model": potential}, reference, frames, name="held-out", batch_size=4).errors["model"]
    out["vs_reference"] = {"force_rmse_meV_per_A": e.force_rmse_meV_per_A,
                           "energy_sd_meV_per_atom": e.energy_sd_meV_per_atom,
                           "stress_rmse_meV_per_A3": e.stress_rmse_meV_per_A3}
    return out


def bilayer(size: str, spacing_A: float = 3.2):
    from exprefine.state import from_atoms
    from exprefine.structures import gcn_stack

    n1, n2 = (int(x) for x in size.split("x"))
    return from_atoms(gcn_stack(2, "AB", spacing_A, supercell=(n1, n2)))


def size_errors(potential, reference, generator, protocol: Protocol, md_dir: Path, name: str,
                smoke: bool, only: tuple[str, ...] | None = None) -> dict:
    """Per cell size: errors vs the model's reference on the MD frames of the data's generator and on
    the model's own (``only``: just these of ``protocol.sizes``, each with the seed of its place in the
    full list). For a DeePMD model the reference is the generator; for a MACE model it is MACE + the
    generator's D3, scored on the same generator frames (realistic g-C3N4 configurations of every
    size, without a second set of reference MD runs: MACE + D3 on 896 atoms runs at < 1 step/s)."""
    from common import spacing_and_density
    from exprefine.closed_loop import compare_to_reference
    from exprefine.sampling import SimulationBlowUp, sample_or_load

    out = {}
    for k, size in enumerate(protocol.sizes):
        if only is not None and size not in only:
            continue
        settings = md_settings(protocol, "size", 200 + k, smoke)
        ref_run = sample_or_load(generator, bilayer(size), settings, md_dir / f"{GENERATOR_FRAMES}_{size}.pt",
                                 progress=not smoke)
        own_run, why_none = None, None
        if name == "reference":
            own_run = ref_run
        elif not runs_own_md(protocol, name, size):
            why_none = {"skipped": "scored on the reference's frames only (--own-md-sizes)"}
        else:
            try:
                own_run = sample_or_load(potential, bilayer(size), settings, md_dir / f"{name}_{size}.pt",
                                         progress=not smoke)
            except SimulationBlowUp as exc:  # its own MD is unusable; the reference's frames still score it
                why_none = {"blew_up": str(exc)}
        row: dict = {"n_atoms": ref_run.trajectory.n_atoms,
                     "d_A": None if own_run is None else spacing_and_density(own_run.trajectory, 2)[0]}
        if own_run is None:
            row["own_frames"] = why_none
        for key, run in (("reference_frames", ref_run), ("own_frames", own_run)):
            if run is None:
                continue
            e = compare_to_reference({"model": potential}, reference, run.trajectory, name=key).errors["model"]
            row[key] = {"force_rmse_meV_per_A": e.force_rmse_meV_per_A,
                        "energy_sd_meV_per_atom": e.energy_sd_meV_per_atom,
                        "stress_rmse_meV_per_A3": e.stress_rmse_meV_per_A3, "n_frames": run.trajectory.n_frames}
        row["force_rmse_vs_reference_meV_per_A"] = row["reference_frames"]["force_rmse_meV_per_A"]
        row["energy_sd_vs_reference_meV_per_atom"] = row["reference_frames"]["energy_sd_meV_per_atom"]
        out[size] = row
    return out


def add_sizes(name: str, potential, reference, generator, protocol: Protocol, out_dir: Path,
              smoke: bool) -> None:
    """Measure an existing entry (``out_dir/<name>.json``) at the cell sizes it lacks; its other
    figures (check, held-out frames, binding curve) stay as they are."""
    path = out_dir / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"{relative(path)}: no entry to add sizes to; measure {name} first")
    entry = Entry(**json.loads(path.read_text()))
    missing = tuple(size for size in protocol.sizes if size not in entry.sizes)
    if not missing:
        print(f"[{name}] has every size already", flush=True)
        return
    print(f"[{name}] adding cell sizes {', '.join(missing)}", flush=True)
    # the seed of each size is that of its place in the full list, as in a full measurement
    new = size_errors(potential, reference, generator, protocol, out_dir / "md", name, smoke, only=missing)
    merged = {**entry.sizes, **new}
    entry.sizes = {size: merged[size] for size in sorted(merged, key=bilayer_atoms)}
    path.write_text(json.dumps(asdict(entry), indent=1))


def md_only(potential, generator, protocol: Protocol, md_dir: Path, name: str, smoke: bool) -> None:
    """Only one model's own MD runs at each cell size, largest first, into the cache that
    :func:`measure` reads. Run it in a second process beside :func:`measure`, which starts with the
    structure check, so that one model's MD uses two cores without running anything twice."""
    from exprefine.sampling import SimulationBlowUp, sample_or_load

    runs = [(k, size) for k, size in enumerate(protocol.sizes) if runs_own_md(protocol, name, size)]
    for k, size in sorted(runs, key=lambda ks: -bilayer_atoms(ks[1])):
        settings = md_settings(protocol, "size", 200 + k, smoke)  # the seed of the size's place, as in size_errors
        model, file = ((generator, md_dir / f"{GENERATOR_FRAMES}_{size}.pt") if name == "reference"
                       else (potential, md_dir / f"{name}_{size}.pt"))
        print(f"[{name}] MD of the {size} bilayer", flush=True)
        try:
            sample_or_load(model, bilayer(size), settings, file, progress=not smoke)
        except SimulationBlowUp as exc:
            print(f"[{name}] {size}: {exc}", flush=True)


def runs_own_md(protocol: Protocol, name: str, size: str) -> bool:
    """Whether model ``name`` runs its own MD at ``size`` (the reference's own run is its frames)."""
    return name == "reference" or protocol.own_md_sizes is None or size in protocol.own_md_sizes


def bilayer_atoms(size: str) -> int:
    """Atoms of an AB bilayer of ``size`` (e.g. ``"4x2"``): 14 per layer and in-plane cell."""
    n1, n2 = (int(x) for x in size.split("x"))
    return 28 * n1 * n2


def binding(potential, protocol: Protocol, smoke: bool) -> dict:
    from exprefine.binding_curve import binding_curve
    from exprefine.structures import gcn_stack

    atoms = gcn_stack(2, "AB", 3.3, supercell=(1, 1) if smoke else (2, 2))
    spacings = protocol.binding_spacings_A[::4] if smoke else protocol.binding_spacings_A
    return binding_curve(potential, atoms, atoms.arrays["layer"], spacings, far_spacing_A=15.0).as_dict()


def measure(name: str, description: str, cfg, test, potential, reference, reference_tag: str, generator,
            protocol: Protocol, out_dir: Path, smoke: bool, status: str, files: list[str], n_updates=None, wall=None,
            check_file: Path | None = None) -> Entry:
    """Every stage for one model; the entry is written to ``out_dir/<name>.json``.

    ``check_file``: frames of an earlier NPT run of this potential on the config's cell to use as its
    structure check instead of a new run."""
    t0 = time.perf_counter()
    md_dir = out_dir / "md"
    entry = Entry(name, description, files, reference_tag, status, n_updates, wall)
    print(f"[{name}] structure check", flush=True)
    entry.check = structure_check(cfg, potential, protocol, md_dir, name, smoke, check_file)
    print(f"[{name}] held-out label frames", flush=True)
    entry.held_out = held_out_errors(test, potential, reference)
    print(f"[{name}] cell sizes {', '.join(protocol.sizes)}", flush=True)
    entry.sizes = size_errors(potential, reference, generator, protocol, md_dir, name, smoke)
    entry.binding = binding(potential, protocol, smoke)
    entry.label_force_rmse_meV_per_A = entry.held_out["vs_label"]["force_rmse_meV_per_A"]
    entry.sq_low_q_chi2_per_point = entry.check["chi2_per_point"].get("sq_low_q")
    (out_dir / f"{name}.json").write_text(json.dumps(asdict(entry), indent=1))
    print(f"[{name}] done in {time.perf_counter() - t0:.0f} s → {relative(out_dir / f'{name}.json')}", flush=True)
    return entry


# ----------------------------------------------------------------------------- the summary
def structure(e: Entry) -> dict:
    """The structure check that counts for an entry: its longer one where it ran, else the table's."""
    return e.long_check.get("whole") or e.check


def goals(e: Entry, base: Entry | None, reference: Entry | None) -> dict[str, bool]:
    """Each goal of issue 16 met (True) or not, for a finished strategy of the reference's model family,
    from the measured figures (the structure from :func:`structure`, of the reference too); empty where
    there is no base or reference of its family to measure against. (The 100 ps of stable NPT are
    measured by stability.py, not here.)"""
    if e.status != "finished" or base is None or reference is None or e.reference != reference.reference:
        return {}
    ours, theirs, base_chi2 = structure(e), structure(reference), base.check["chi2_per_point"]
    chi2 = ours.get("chi2_per_point", {})
    forces = [s["force_rmse_vs_reference_meV_per_A"] for s in e.sizes.values()]
    energies = [s["energy_sd_vs_reference_meV_per_atom"] for s in e.sizes.values()]
    binding, reference_binding = e.binding, reference.binding

    def lower_100x(key: str) -> bool:
        return chi2.get(key) is not None and chi2[key] <= base_chi2[key] / 100.0

    return {
        "forces_vs_reference_le_15_meV_per_A": bool(forces) and max(forces) <= 15.0,
        "label_forces_within_5_percent": e.label_force_rmse_meV_per_A <= 1.05 * base.label_force_rmse_meV_per_A,
        "energy_sd_le_1_meV_per_atom": bool(energies) and max(energies) <= 1.0,
        "binding_energy_within_20_percent": abs(binding["binding_energy_meV_per_atom"]
                                                - reference_binding["binding_energy_meV_per_atom"])
        <= 0.2 * abs(reference_binding["binding_energy_meV_per_atom"]),
        "d_min_within_0.05_A": abs(binding["d_min_A"] - reference_binding["d_min_A"]) <= 0.05,
        "sq_and_gr_chi2_100x_lower": lower_100x("sq_low_q") and lower_100x("pdf"),
        "d_within_0.02_A": ours.get("d_A") is not None and abs(ours["d_A"] - theirs["d_A"]) <= 0.02,
        "truth_forces_below_base": e.held_out["vs_truth"]["force_rmse_meV_per_A"]
        < base.held_out["vs_truth"]["force_rmse_meV_per_A"],
    }


def choose(entries: list[Entry]) -> str | None:
    """The strategy the README recommends: the lowest largest force error vs the reference over the cell
    sizes among the finished ones whose label forces stay within 5 % of the base's, whose low-Q S(Q)
    χ² is at least 10× below the base's and whose largest force error vs the reference is below the
    base's (a refinement that fixes the structure with worse forces is not recommended) — and among
    those, if any meets every goal (``goals``, filled by :func:`summarize`), only those; None if none
    qualifies. A strategy is compared with the base of its own model family (``reference``: the
    base DeePMD for DeePMD strategies, ``base_mace`` for E); one whose family has no measured base is not
    eligible."""
    bases = {e.reference: e for e in entries if e.status == "base"}

    def worst_force(e: Entry) -> float:
        return max(s["force_rmse_vs_reference_meV_per_A"] for s in e.sizes.values())

    def qualifies(e: Entry) -> bool:
        base = bases.get(e.reference)
        return (base is not None and e.status == "finished"
                and e.label_force_rmse_meV_per_A <= 1.05 * base.label_force_rmse_meV_per_A
                and e.sq_low_q_chi2_per_point is not None and base.sq_low_q_chi2_per_point is not None
                and e.sq_low_q_chi2_per_point <= 0.1 * base.sq_low_q_chi2_per_point
                and worst_force(e) < worst_force(base))

    ok = [e for e in entries if qualifies(e)]
    if not ok:
        return None
    complete = [e for e in ok if e.goals and all(e.goals.values())]
    return min(complete or ok, key=worst_force).name


def markdown(entries: list[Entry], sizes: tuple[str, ...]) -> str:
    head = ["model", "status", "S(Q) χ² low Q", "S(Q) χ² high Q", "G(r) χ²", "d (Å)", "ρ (g/cm³)",
            "F vs label (meV/Å)", "F vs truth", "F vs reference (held-out)"]
    head += [f"F vs ref {s}" for s in sizes] + [f"E SD vs ref {s} (meV/atom)" for s in sizes]
    head += ["E_b (meV/atom)", "d_min (Å)", "wall (s)", "goals missed"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def num(x, fmt):
        return "—" if x is None else format(x, fmt)

    for e in entries:
        chi2 = e.check["chi2_per_point"]
        row = [e.name + (" **(chosen)**" if e.chosen else ""), e.status,
               num(chi2.get("sq_low_q"), ".3g"), num(chi2.get("sq_high_q"), ".3g"), num(chi2.get("pdf"), ".3g"),
               "MD blew up" if e.check.get("blew_up") else f"{e.check['d_A']:.3f} ± {e.check['d_se_A']:.3f}",
               num(e.check["density_g_per_cm3"], ".3f"),
               f"{e.held_out['vs_label']['force_rmse_meV_per_A']:.1f}",
               f"{e.held_out['vs_truth']['force_rmse_meV_per_A']:.1f}",
               f"{e.held_out['vs_reference']['force_rmse_meV_per_A']:.1f}"]
        row += [num(e.sizes.get(s, {}).get("force_rmse_vs_reference_meV_per_A"), ".1f") for s in sizes]
        row += [num(e.sizes.get(s, {}).get("energy_sd_vs_reference_meV_per_atom"), ".2f") for s in sizes]
        missed = [name for name, met in e.goals.items() if not met]
        row += [f"{e.binding['binding_energy_meV_per_atom']:.1f}", f"{e.binding['d_min_A']:.3f}",
                num(e.refinement_wall_time_s, ".0f"),
                ("none" if not missed else ", ".join(missed)) if e.goals else "—"]
        lines.append("| " + " | ".join(row) + " |")
    longer = [e for e in entries if e.long_check]
    if longer:
        lines += ["", "| longer check | production (ps) | frames | S(Q) χ² low Q | S(Q) χ² high Q | G(r) χ² | d (Å) "
                  "| ρ (g/cm³) |", "|" + "---|" * 8]
        for e in longer:
            m, chi2 = e.long_check["whole"], e.long_check["whole"]["chi2_per_point"]
            lines.append(f"| {e.name} | {e.long_check['production_ps']:g} | {m['n_frames']} | "
                         f"{num(chi2.get('sq_low_q'), '.3g')} | {num(chi2.get('sq_high_q'), '.3g')} | "
                         f"{num(chi2.get('pdf'), '.3g')} | {m['d_A']:.4f} ± {m['d_se_A']:.4f} | "
                         f"{m['density_g_per_cm3']:.4f} |")
    return "\n".join(lines) + "\n"


def plot(path: Path, entries: list[Entry], sizes: tuple[str, ...]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.0))
    x = np.arange(len(sizes))
    width = 0.8 / max(1, len(entries))
    for k, e in enumerate(entries):
        axes[0].bar(x + k * width, [e.sizes.get(s, {}).get("force_rmse_vs_reference_meV_per_A", np.nan)
                                    for s in sizes], width,
                    label=e.name)
        axes[1].plot(e.binding["spacings_A"], e.binding["energy_meV_per_atom"], "o-", ms=3, label=e.name)
    axes[0].set_xticks(x + 0.4 - width / 2, sizes)
    axes[0].set_ylabel("force RMSE vs reference (meV/Å)")
    axes[0].set_yscale("log")  # from ≈ 2 (D3 corrections) to ≈ 1000 (a diverged one); the reference's 0 is not drawn
    axes[0].axhline(15.0, color="0.5", ls="--", lw=0.8, label="goal 15 meV/Å")
    axes[0].legend(fontsize=7)
    axes[1].set_xlabel("interlayer spacing d (Å), rigid ideal layers")
    axes[1].set_ylabel("E(d) − E(15 Å) (meV/atom)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summarize(out_dir: Path, names: list[str], sizes: tuple[str, ...]) -> list[Entry]:
    entries = [Entry(**json.loads((out_dir / f"{n}.json").read_text())) for n in names
               if (out_dir / f"{n}.json").exists()]
    if not entries:  # nothing measured yet (e.g. only a long check ran)
        return entries
    long_path = out_dir / "long_checks.json"
    longer = {r["name"]: r for r in json.loads(long_path.read_text())} if long_path.exists() else {}
    for e in entries:
        e.long_check = longer.get(e.name, {})
    reference = next((e for e in entries if e.status == "reference"), None)
    base = next((e for e in entries if e.status == "base" and reference is not None and e.reference == reference.reference),
                None)
    for e in entries:
        e.goals = goals(e, base, reference)
    chosen = choose(entries)
    for e in entries:
        e.chosen = e.name == chosen
    table = json.dumps([asdict(e) for e in entries], indent=1)
    (out_dir / "strategies.json").write_text(table)
    (out_dir.parent / "strategies.json").write_text(table)
    (out_dir / "strategies.md").write_text(markdown(entries, sizes))
    plot(out_dir / "strategies.png", entries, sizes)
    return entries


@dataclass
class Model:
    """One model of the comparison, ready to measure."""

    name: str
    description: str
    cfg: object
    potential: object
    reference: object
    reference_tag: str
    generator: object
    status: str
    files: list[str]
    n_updates: int | None = None
    wall_time_s: float | None = None
    check_file: Path | None = None


def models(args, base_cfg, strategies, wanted: set[str]):
    """The wanted models in the table's order: the reference, the base, then each strategy's refined one."""
    base, reference, base_file = base_and_reference(base_cfg)
    if "reference" in wanted:
        yield Model("reference", "base DeePMD + GFN1 D3(BJ), the generator of the data", base_cfg, reference,
                    reference, "deepmd", reference, "reference", [relative(base_file)],
                    check_file=None if args.smoke else REFERENCE_CHECK)
    if "base" in wanted:
        yield Model("base", "base DeePMD (labels only)", base_cfg, base, reference, "deepmd", reference, "base",
                    [relative(base_file)])
    if "base_mace" in wanted:  # the base of E, the MACE strategy: its cell and targets, no correction
        cfg = load_config(MACE_CONFIG, smoke_run_dir(args, "base_mace"))
        mace, mace_reference, mace_file = base_and_reference(cfg)
        yield Model("base_mace", "base MACE (labels only)", cfg, mace, mace_reference, "mace", reference, "base",
                    [relative(mace_file)])
    for name, config, description in strategies:
        if name not in wanted:
            continue
        cfg = load_config(config, smoke_run_dir(args, name))
        if args.smoke:  # the start parameters, whatever runs exist
            potential, status, n_updates, wall = build_potential(cfg), "not run (smoke: start parameters)", 0, None
        else:
            potential, status, n_updates, wall = refined_potential(cfg)
        _, own_reference, _ = base_and_reference(cfg)
        tag = "mace" if cfg.potential.terms[0].kind == "mace" else "deepmd"
        yield Model(name, description, cfg, potential, own_reference, tag, reference, status, model_files(cfg),
                    n_updates, wall)


# ------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", metavar="NAME", help="measure only these (base, base_mace, reference, a_fitting, ...)")
    p.add_argument("--sizes", nargs="+", help=f"in-plane cells (default: {' '.join(DEFAULT_SIZES)}; "
                                               f"with --smoke: 1x1)")
    p.add_argument("--own-md-sizes", nargs="+", metavar="SIZE",
                   help="sizes at which each model also runs its own MD (default: every size); at the others "
                        "it is scored on the reference's frames only")
    p.add_argument("--md-only", action="store_true",
                   help="only the named models' own MD at each cell size (largest first), into the cache: "
                        "a second process beside a full one, which starts with the structure check")
    p.add_argument("--add-sizes", action="store_true",
                   help="add the --sizes an existing entry lacks (its other figures stay) and rebuild the table")
    p.add_argument("--check-ps", type=float, default=5.0)
    p.add_argument("--long-check-ps", type=float, default=None, metavar="PS",
                   help="only a structure check of the named models with PS ps of production (resumable 1-ps "
                        "segments, md/<name>_check<PS>ps.pt), d and χ² of it and of its halves in long_checks.json")
    p.add_argument("--long-check-seed", type=int, default=LONG_CHECK_SEED,
                   help="the long check's MD seed (another one for a model fitted to a long check of seed "
                        f"{LONG_CHECK_SEED}, so that its check is independent of its data)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "strategies")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--smoke", action="store_true", help="a tiny version of every stage (seconds; for tests)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup(args.threads)

    sys.path.insert(0, str(HERE))
    own = None if args.own_md_sizes is None else tuple(args.own_md_sizes)
    if args.smoke:
        protocol = Protocol(sizes=tuple(args.sizes or ("1x1",)), held_out_frames=3, own_md_sizes=own)
    else:
        protocol = Protocol(check_ps=args.check_ps, sizes=tuple(args.sizes or DEFAULT_SIZES), own_md_sizes=own)
    args.out.mkdir(parents=True, exist_ok=True)
    strategies = STRATEGIES[2:3] if args.smoke else STRATEGIES
    names = ["base", *([] if args.smoke else ["base_mace"]), *[s[0] for s in strategies]]
    wanted = set(args.only or names)
    unknown = wanted - set(names) - {"reference"}
    if unknown:
        print(f"strategies.py: error: unknown name(s) {sorted(unknown)}; choose from {names + ['reference']}",
              file=sys.stderr)
        return 2
    base_cfg = load_config(BASE_CONFIG, smoke_run_dir(args, "base"))
    test = None if args.md_only or args.long_check_ps is not None else held_out_set(base_cfg, protocol)
    for model in models(args, base_cfg, strategies, wanted):
        if args.long_check_ps is not None:
            long_check(model, protocol, args.out, args.long_check_ps, args.smoke, args.long_check_seed)
        elif args.add_sizes:
            add_sizes(model.name, model.potential, model.reference, model.generator, protocol, args.out, args.smoke)
        elif args.md_only:
            md_only(model.potential, model.generator, protocol, args.out / "md", model.name, args.smoke)
        else:
            measure(model.name, model.description, model.cfg, test, model.potential, model.reference,
                    model.reference_tag, model.generator, protocol, args.out, args.smoke, model.status, model.files,
                    model.n_updates, model.wall_time_s, check_file=model.check_file)
    if args.md_only:
        return 0
    entries = summarize(args.out, [*names, "reference"], protocol.sizes)  # the base first, as the issue asks
    print(markdown(entries, protocol.sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
