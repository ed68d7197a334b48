"""The g-C3N4 study after a refinement (issue 6): base vs refined model, one markdown report.

    python examples/gcn/report.py --run examples/gcn/runs/refine_deepmd
    # → <run>/report/report.md and PNG figures beside it

Reads the run's ``config.yaml`` (its potential, truth cell, targets and label data set) and:

1. **Targets**: MD in the run's own ensemble (NPT with c free when the config sets
   ``pressure_bar``, else NVT), started from the truth's cell, with the base model and with the
   refined parameters (``final_model.pt``), ``--md-ps`` each, fresh seeds: S(Q) and G(r) vs the
   data, χ² per point (the loss with the data's σ, weight 1) before and after, and the factor
   between them; the interlayer spacing and density of each run next to the truth's.
2. **Partial g(r)** of both trajectories against the truth's (``data/synthetic_partials_truth.csv``),
   and the first C–N peak (the bond length) of each: intralayer structure kept or not.
3. **Held-out label frames** (the run's DFT test split): energy/force RMSE against the labels and
   against the truth (labels + GFN1's D3 term, exact: tests/test_tblite_reference.py).
4. **Cell sizes, spacing, density**: transferability.py for both models (NPT 300 K, 1 bar, c
   free; errors vs label and truth per size; cached under ``results/transferability/``).
5. **Native tool**: an independent NVT run of the refined model *file* through its own tool's
   ASE calculator (DeePMD-kit's ``deepmd.calculator.DP`` on ``refined_deepmd.pth``, or
   ``MACECalculator`` on ``refined.model``) and ASE's Langevin, ``--native-ps`` long, in the mean
   cell of exprefine's refined run (NVT at ⟨V⟩ of an NPT run has the same structure to O(1/N)):
   its S(Q) and G(r) against the data and against exprefine's own refined trajectory.
6. **Closed loop** (``--closed-loop-sizes``): both models against the reference potential that made
   the synthetic data (base + GFN1's D3, :mod:`exprefine.closed_loop`) on the held-out label frames
   and on MD frames of the reference and of each model per cell size (no tblite needed), and the
   rigid-layer binding curves of base, refined and reference (strategies.py does the same for
   every strategy).
7. **The run itself** (`exprefine report`, :func:`exprefine.report.build_report`, after the study's
   sections): targets before/after, loss, N_eff/N and parameter history with rejected steps marked,
   parameters, wall time, hardware, versions and the resolved config.

Every MD run is saved in ``<run>/report/`` and reused when the report is written again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

import strategies as st
import transferability as tr
from common import relative_to_repo, setup

HERE = Path(__file__).resolve().parent  # on sys.path when run as a script: transferability.py imports


#: what --smoke sets
SMOKE = {"md_ps": 0.02, "native_ps": 0.01, "equilibration_ps": 0.005, "sizes": ["2x2"], "frames": 1, "closed_loop_sizes": ["1x1"]}


@dataclass
class ModelRun:
    """One model's run on the truth cell: targets, partials, C–N bond peak (Å), spacing (Å), density (g/cm³)."""

    name: str
    chi2_per_point: dict[str, float]
    rmse: dict[str, float]
    cn_bond_peak_A: float
    partial_rmse_vs_truth: dict[str, float]
    n_frames: int
    spacing_A: float
    spacing_se_A: float
    density_g_per_cm3: float
    density_se_g_per_cm3: float
    n_thin_frames: int = 0


def potentials(cfg, run: Path):
    """(base, refined) Potentials of the run's config."""
    from exprefine.builders import build_potential, load_potential_state

    base = build_potential(cfg)
    refined = build_potential(cfg)
    load_potential_state(refined, run / "final_model.pt")
    return base, refined


def base_model_file(cfg) -> Path:
    """The model file of the config's (single) MLIP term: DeePMD ``checkpoint_file`` or MACE ``model_file``."""
    term = cfg.potential.terms[0]
    path = getattr(term, "checkpoint_file", None) or getattr(term, "model_file", None)
    if path is None:
        raise ValueError("the run's first potential term is not a DeePMD or MACE model file")
    return Path(path)


def native_model_file(run: Path) -> Path:
    for name in ("refined_deepmd.pt", "refined.model"):
        if (run / name).exists():
            return run / name
    raise FileNotFoundError(f"no refined model file (refined_deepmd.pt or refined.model) in {run}")


def model_run(cfg, potential, path: Path, md_ps: float, seed: int, equilibration_ps: float | None = None):
    """``md_ps`` of production with ``potential`` in the run's ensemble from the truth's cell (cached at ``path``),
    after the run's own equilibration (or ``equilibration_ps``)."""
    from exprefine.builders import build_state, sampler_settings
    from exprefine.sampling import sample
    from exprefine.trajectory import Trajectory

    if path.exists():
        return Trajectory.load(path)
    settings = sampler_settings(cfg.sampling)
    n_steps = int(round(md_ps * 1000 / cfg.sampling.timestep_fs))
    settings = replace(settings, seed=seed, n_production_steps=max(settings.stride_steps,
                                                                   n_steps - n_steps % settings.stride_steps))
    if equilibration_ps is not None:
        settings = replace(settings, n_equilibration_steps=int(round(equilibration_ps * 1000 / cfg.sampling.timestep_fs)))
    result = sample(potential, build_state(cfg), settings, progress=True)
    result.trajectory.save(path)
    return result.trajectory


def native_tool_file(run: Path) -> Path:
    """The refined model file a user's own tools load: frozen DeePMD ``.pth`` or MACE ``.model``."""
    for name in ("refined_deepmd.pth", "refined.model"):
        if (run / name).exists():
            return run / name
    raise FileNotFoundError(f"no refined model file (refined_deepmd.pth or refined.model) in {run}")


def native_calculator(model_file: Path, dtype: str = "float64", pair_table: Path | None = None,
                      d3_file: Path | None = None):
    """The ASE calculator of ``model_file``'s own package (DeePMD-kit's DP or MACECalculator), summed with
    the refined pair correction read from its LAMMPS table file when ``pair_table`` is given, and with
    the refined D3(BJ) term (``refined_d3bj.json``, the dftd3 package's own calculator) when ``d3_file`` is.

    ``dtype``: MACECalculator's ``default_dtype``, the precision the run's own MD used
    (``system.dtype``); DeePMD-kit's frozen model keeps its own.
    """
    if model_file.suffix == ".pth":
        from deepmd.calculator import DP

        calc = DP(model=str(model_file))
    else:
        from mace.calculators import MACECalculator

        calc = MACECalculator(model_paths=str(model_file), device="cpu", default_dtype=dtype)
    if pair_table is None and d3_file is None:
        return calc
    from ase.calculators.mixing import SumCalculator

    from exprefine.io.lammps_table import TabulatedPairCalculator
    from exprefine.potentials.dftd3 import d3_ase_calculator, load_d3_parameters

    parts = [calc]
    if pair_table is not None:
        parts.append(TabulatedPairCalculator(pair_table))
    if d3_file is not None:
        parts.append(d3_ase_calculator(load_d3_parameters(d3_file)))
    return SumCalculator(parts)


def native_nvt(cfg, run: Path, path: Path, nvt_ps: float, seed: int, cell_A: np.ndarray,
               equilibration_ps: float | None = None):
    """NVT of the refined model file with its own ASE calculator and ASE's Langevin (not exprefine's sampler).

    Same temperature, time step, friction, equilibration and frame interval as the run's config,
    in the cell ``cell_A`` ([3, 3] rows, Å; the truth cell's atoms scaled into it); the frames
    become an external Trajectory for exprefine's observables.
    """
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from tqdm import tqdm

    from exprefine.builders import build_state
    from exprefine.io.frames import external_trajectory
    from exprefine.trajectory import Trajectory

    if path.exists():
        return Trajectory.load(path)
    s = cfg.sampling
    model_file = native_tool_file(run)
    atoms = build_state(cfg).to_atoms()[0]
    atoms.set_cell(cell_A, scale_atoms=True)
    table, d3 = run / "refined_pairs.table", run / "refined_d3bj.json"
    atoms.calc = native_calculator(model_file, cfg.system.dtype, table if table.exists() else None,
                                   d3 if d3.exists() else None)
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=s.temperature_K, rng=rng)
    dyn = Langevin(atoms, timestep=s.timestep_fs * units.fs, temperature_K=s.temperature_K,
                   friction=s.friction_per_ps / (1000.0 * units.fs), fixcm=False, rng=rng)
    stride = max(1, int(round(s.frame_interval_fs / s.timestep_fs)))
    eq_ps = s.equilibration_ps if equilibration_ps is None else equilibration_ps
    n_eq = int(round(eq_ps * 1000 / s.timestep_fs))
    n_frames = max(1, int(round(nvt_ps * 1000 / s.frame_interval_fs)))
    positions, cells = [], []
    with tqdm(total=n_eq + n_frames * stride, desc=f"ASE Langevin ({model_file.name})", unit="step") as bar:
        for _ in range(n_eq):
            dyn.run(1)
            bar.update(1)
        for _ in range(n_frames):
            dyn.run(stride)
            bar.update(stride)
            positions.append(atoms.get_positions())
            cells.append(np.asarray(atoms.get_cell()))
    trajectory = external_trajectory(np.array(positions), np.array(cells), atoms.get_pbc(), atoms.get_atomic_numbers(),
                                     label=model_file.name, temperature_K=s.temperature_K,
                                     time_fs=np.arange(1, n_frames + 1) * stride * s.timestep_fs)
    trajectory.save(path)
    return trajectory


def read_partials(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rows = [r for r in path.read_text().splitlines() if r and not r.startswith("#")]
    header = rows[0].split(",")
    data = np.array([[float(x) for x in r.split(",")] for r in rows[1:]])
    return data[:, 0], {name: data[:, k] for k, name in enumerate(header) if k > 0}


def thick_frames(trajectory, r_max_A: float):
    """The frames of ``trajectory`` whose cells are thick enough for ``r_max_A`` (Å), and how many were not.

    A model that packs the layers below the truth's spacing can take an NPT cell below 2·r_max
    in some frames (the library's :func:`~exprefine.observables.thick_enough`); S(Q), G(r) and the
    partials are then averaged over the other frames and the report says how many were left out.
    """
    from exprefine.observables import thick_enough

    keep = thick_enough(r_max_A, trajectory.cells_A)
    n_thin = trajectory.n_frames - int(keep.sum())
    if n_thin == 0:
        return trajectory, 0
    if n_thin == trajectory.n_frames:
        raise SystemExit(f"report.py: every frame's cell is thinner than 2·r_max = {2 * r_max_A:g} Å")
    return trajectory.select(keep), n_thin


def observable_r_max_A(observable) -> float:
    """The r_max (Å) an r-based observable needs (S(Q) and G(r) keep theirs in their r binning); 0 if none."""
    for holder in (observable, getattr(observable, "binning", None)):
        if holder is not None and getattr(holder, "r_max_A", None) is not None:
            return float(holder.r_max_A)
    return 0.0


def analyse(cfg, name: str, trajectory, truth_r: np.ndarray, truth: dict[str, np.ndarray], n_layers: int):
    """χ² per point and RMSE of each target, partials, the C–N bond peak, spacing and density of one trajectory.

    Spacing and density use every frame; the r-based quantities only the frames thick enough
    for the largest r_max (:func:`thick_frames`).
    """
    import torch

    from common import spacing_and_density
    from exprefine.builders import build_targets
    from exprefine.observables import RadialDistribution
    from exprefine.observables.peaks import parabolic_peak

    d, d_se, rho, rho_se = spacing_and_density(trajectory, n_layers)
    targets = build_targets(cfg)
    r_max = max([observable_r_max_A(t.observable) for t in targets] + [float(truth_r[-1] + 0.5 * (truth_r[1] - truth_r[0]))])
    trajectory, n_thin = thick_frames(trajectory, r_max)
    if n_thin:
        print(f"report.py: {name}: {n_thin} frames thinner than 2·r_max = {2 * r_max:g} Å left out of S(Q), "
              f"G(r) and the partials ({trajectory.n_frames} kept)", flush=True)
    chi2, rmse, curves = {}, {}, {}
    for target in targets:
        values = target.observable.evaluate(trajectory).double().mean(dim=0)
        chi2[target.name] = float((target.deviation(values) ** 2).mean())
        rmse[target.name] = float(target.rmse(values))
        curves[target.name] = (target.observable.grid().double().numpy(), values.numpy(),
                               target.reference.numpy(), None if target.sigma is None else target.sigma.numpy())
    partials, r = {}, None
    for key in truth:
        a, b = key[2], key[3]
        rdf = RadialDistribution(float(truth_r[-1] + 0.5 * (truth_r[1] - truth_r[0])),
                                 bin_width_A=float(truth_r[1] - truth_r[0]), species=(a, b))
        partials[key] = rdf.evaluate(trajectory).double().mean(dim=0).numpy()
        r = rdf.grid().double().numpy()
    peak = float(parabolic_peak(torch.as_tensor(r), torch.as_tensor(partials["g_CN"]), 1.2, 1.55))
    diff = {k: float(np.sqrt(np.mean((partials[k] - np.interp(r, truth_r, truth[k])) ** 2))) for k in partials}
    return (ModelRun(name, chi2, rmse, peak, diff, trajectory.n_frames, d, d_se, rho, rho_se, n_thin), curves,
            (r, partials))


def label_test_set(cfg, work: Path, smoke: bool):
    """The held-out label frames: the test split of the run's ``dft`` section, or of the label data set
    of the strategy configs for a run without one (3 frames with ``smoke``)."""
    protocol = st.Protocol(held_out_frames=3 if smoke else None)
    label_cfg = cfg if cfg.dft is not None else st.load_config(st.BASE_CONFIG, [f"run_dir={work / 'split'}"])
    return st.held_out_set(label_cfg, protocol)


def dft_errors(test, base, refined):
    """Energy/force RMSE of both models on the held-out label frames, vs label and vs truth."""
    from exprefine.data import add_term_to_labels, evaluate_dft_errors
    from exprefine.potentials import D3Dispersion
    from exprefine.reference import gfn1_d3

    truth = add_term_to_labels(test, D3Dispersion(gfn1_d3()), source="label + D3 (truth)")
    out = {}
    for name, potential in (("base", base), ("refined", refined)):
        for ref, data in (("label", test), ("truth", truth)):
            e = evaluate_dft_errors(potential, data, batch_size=8)
            out[f"{name}_vs_{ref}"] = {"energy_rmse_meV_per_atom": e.energy_rmse_meV_per_atom,
                                       "force_rmse_meV_per_A": e.force_rmse_meV_per_A,
                                       "stress_rmse_meV_per_A3": e.stress_rmse_meV_per_A3}
    return test.n_frames, out


def transferability(source: list[str], tag: str, sizes: list[str], frames: int, out: Path, smoke: bool = False) -> dict:
    """The transferability study (``<out>/<tag>/``) of ``source`` (``["--model", file]`` or ``["--run", folder]``):
    read when its table already holds every size with ``frames`` labels (the MD trajectories behind it
    are not committed), else run (resumable; cached labels are reused)."""
    table = out / tag / "transferability.json"
    if table.exists():
        done = json.loads(table.read_text())
        by_size = {s["size"]: s for s in done.get("sizes", [])}
        if all(size in by_size and by_size[size]["n_labelled"] >= frames for size in sizes):
            return {**done, "sizes": [by_size[size] for size in sizes]}
    args = tr.build_parser().parse_args([*source, "--tag", tag, "--sizes", *sizes, "--frames", str(frames),
                                         "--out", str(out), "--no-progress", *(["--smoke"] if smoke else [])])
    return tr.run(args)


def closed_loop(cfg, test, base, refined, md_dir: Path, sizes: list[str], smoke: bool) -> dict:
    """Base and refined model vs the reference (base + D3): held-out frames, cell sizes, binding curves
    (strategies.py's measurements; the held-out frames are the label data set's test split). The
    cell sizes are scored on MD frames of the data's generator, base DeePMD + D3, as in strategies.py."""
    _, reference, _ = st.base_and_reference(cfg)
    if cfg.potential.terms[0].kind == "deepmd":
        generator = reference
    else:
        _, generator, _ = st.base_and_reference(st.load_config(st.BASE_CONFIG))
    protocol = st.Protocol(sizes=tuple(sizes))
    out: dict = {"held_out": {}, "sizes": {}, "binding": {}}
    for name, potential in (("base", base), ("refined", refined)):
        out["held_out"][name] = st.held_out_errors(test, potential, reference)["vs_reference"]
        out["sizes"][name] = st.size_errors(potential, reference, generator, protocol, md_dir, name, smoke=smoke)
    for name, potential in (("base", base), ("refined", refined), ("reference", reference)):
        out["binding"][name] = st.binding(potential, protocol, smoke=smoke)
    return out


def closed_loop_lines(loop: dict, sizes: list[str]) -> list[str]:
    lines = ["## Closed loop: against the reference that made the data (base + GFN1 D3(BJ))", ""]
    rows = [["model", "frames", "F RMSE (meV/Å)", "E SD (meV/atom)", "stress RMSE (meV/Å³)"]]
    for name, e in loop["held_out"].items():
        rows.append([name, "held-out label frames", f"{e['force_rmse_meV_per_A']:.1f}",
                     f"{e['energy_sd_meV_per_atom']:.2f}", f"{e['stress_rmse_meV_per_A3']:.3f}"])
    for size in sizes:
        for name, by_size in loop["sizes"].items():
            row = by_size[size]
            for key in ("reference_frames", "own_frames"):
                e = row[key]
                rows.append([name, f"{size} ({row['n_atoms']} atoms), MD of the {key.split('_')[0]} "
                             f"({e['n_frames']} frames)", f"{e['force_rmse_meV_per_A']:.1f}",
                             f"{e['energy_sd_meV_per_atom']:.2f}", f"{e['stress_rmse_meV_per_A3']:.3f}"])
    lines += table(rows) + ["", "Rigid-layer binding curve (2×2 AB bilayer, E(d) − E(15 Å)):", ""]
    rows = [["model", "binding energy (meV/atom)", "d_min (Å)"]]
    for name, b in loop["binding"].items():
        rows.append([name, f"{b['binding_energy_meV_per_atom']:.1f}", f"{b['d_min_A']:.3f}"])
    return lines + table(rows) + [""]


def plot_curves(path: Path, curves: dict[str, dict]) -> None:
    """Each target's curve of every model (``curves[model][target]``) against the data and its σ band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(curves.values()))
    names = list(first)
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5))
    for ax, name in zip(np.atleast_1d(axes), names):
        x, _, ref, sigma = first[name]
        if sigma is not None:
            ax.fill_between(x, ref - sigma, ref + sigma, color="0.8", lw=0)
        ax.plot(x, ref, "k", lw=0.7, label="data")
        for model, c in curves.items():
            ax.plot(x, c[name][1], lw=0.8, label=model)
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_partials(path: Path, truth_r, truth, base, refined) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13.0, 3.5))
    for ax, key in zip(axes, truth):
        ax.plot(truth_r, truth[key], "k", lw=0.8, label="truth")
        ax.plot(base[0], base[1][key], lw=0.8, label="base")
        ax.plot(refined[0], refined[1][key], lw=0.8, label="refined")
        ax.set_xlabel("r (Å)")
        ax.set_title(key, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return out + ["| " + " | ".join(r) + " |" for r in rows[1:]]


def study_sections(lines: list[str]) -> list:
    """The study's markdown lines (the first is its ``# title``) cut into report sections at ``## `` headings."""
    from exprefine.report import Section

    sections: list = []
    for line in lines[1:]:
        if line.startswith("## "):
            sections.append(Section(line[3:], ""))
        elif sections:
            sections[-1].body += line + "\n"
        elif line.strip():
            sections.append(Section("Models", line + "\n"))
    for section in sections:
        section.body = section.body.strip()
    return sections


def write_markdown(out: Path, run: Path, lines: list[str]) -> Path:
    """``out/report.md``: the study's sections (``lines``), then exprefine's own report of the run —
    the targets before/after the refinement, loss/N_eff/parameter history, parameters, wall time,
    hardware, versions and the resolved config (:func:`exprefine.report.build_report`)."""
    from exprefine.report import build_report, render_markdown

    report = build_report(run, out)
    report.title = lines[0].removeprefix("# ")
    report.sections = study_sections(lines) + report.sections
    path = out / "report.md"
    path.write_text(render_markdown(report))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True, help="a finished exprefine refine run folder")
    p.add_argument("--md-ps", type=float, default=10.0, help="production per model on the truth cell (the run's ensemble)")
    p.add_argument("--sizes", nargs="+", default=["2x2", "4x2", "4x4"], help="cells of the transferability study")
    p.add_argument("--frames", type=int, default=4, help="labelled frames per cell size")
    p.add_argument("--partials", type=Path, default=None,
                   help="the truth's partial g(r) (default: synthetic_partials_truth.csv beside the run's first data file)")
    p.add_argument("--synthetic-json", type=Path, default=None,
                   help="the synthetic experiment's settings (default: synthetic_experiment.json beside the data)")
    p.add_argument("--transferability-out", type=Path, default=None,
                   help="where the transferability studies go (default results/transferability; --smoke: <run>/report)")
    p.add_argument("--native-ps", type=float, default=5.0,
                   help="NVT production of the refined model file through its own ASE calculator (0: skip)")
    p.add_argument("--n-layers", type=int, default=None,
                   help="layers in the truth cell (default: the synthetic experiment's settings, else 2)")
    p.add_argument("--closed-loop-sizes", nargs="*", default=["2x2", "4x2", "4x4", "8x4"],
                   help="cells of the closed-loop comparison with the reference (none: skip it)")
    p.add_argument("--equilibration-ps", type=float, default=None,
                   help="equilibration before each MD run on the truth cell (default: the run's own)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--smoke", action="store_true",
                   help="every section on tiny runs (seconds per model; for tests): 0.02 ps MD, 1 labelled 2×2 frame, "
                        "closed loop on the 1×1 bilayer")
    args = p.parse_args(argv)
    if args.smoke:  # the smoke values where the command line gives none
        p.set_defaults(**SMOKE)
        args = p.parse_args(argv)
    setup(args.threads)

    t0 = time.perf_counter()
    run = args.run.resolve()
    out = run / "report"
    out.mkdir(exist_ok=True)
    from exprefine.config import load_config

    cfg = load_config(run / "config.yaml")
    base, refined = potentials(cfg, run)
    data_dir = next(t.data.file.parent for t in cfg.targets if t.data is not None)
    truth_r, truth = read_partials(args.partials or data_dir / "synthetic_partials_truth.csv")
    synthetic_json = args.synthetic_json or data_dir / "synthetic_experiment.json"
    synthetic = json.loads(synthetic_json.read_text()) if synthetic_json.exists() else {}
    n_layers = args.n_layers or synthetic.get("settings", {}).get("layers", 2)
    ensemble = (f"NPT at {cfg.sampling.pressure_bar:g} bar ({cfg.sampling.barostat_coupling})"
                if cfg.sampling.pressure_bar is not None else "NVT")
    results, curves, partials, trajectories = {}, {}, {}, {}
    for k, (name, potential) in enumerate((("base", base), ("refined", refined))):
        trajectories[name] = model_run(cfg, potential, out / f"md_{name}.pt", args.md_ps, seed=1000 + k,
                                       equilibration_ps=args.equilibration_ps)
        results[name], curves[name], partials[name] = analyse(cfg, name, trajectories[name], truth_r, truth, n_layers)
    native = None
    if args.native_ps > 0:
        mean_cell = trajectories["refined"].cells_A.double().mean(dim=0).numpy()
        traj = native_nvt(cfg, run, out / "nvt_native.pt", args.native_ps, seed=2000, cell_A=mean_cell,
                          equilibration_ps=args.equilibration_ps)
        native, curves["refined (native tool)"], _ = analyse(cfg, "native", traj, truth_r, truth, n_layers)
        native_vs_exprefine = {
            name: float(np.mean(((curves["refined (native tool)"][name][1] - curves["refined"][name][1])
                                 / curves["refined"][name][3]) ** 2))
            for name in curves["refined"] if curves["refined"][name][3] is not None}
    plot_curves(out / "targets.png", curves)
    plot_partials(out / "partials.png", truth_r, truth, partials["base"], partials["refined"])
    test = label_test_set(cfg, out, args.smoke)
    n_test, dft = dft_errors(test, base, refined)

    base_file = base_model_file(cfg)
    tr_out = args.transferability_out or (out / "transferability" if args.smoke else HERE / "results" / "transferability")
    sizes_base = transferability(["--model", str(base_file)], base_file.stem, args.sizes, args.frames, tr_out, args.smoke)
    sizes_refined = transferability(["--run", str(run)], f"{run.name}_refined", args.sizes, args.frames, tr_out,
                                    args.smoke)
    loop = closed_loop(cfg, test, base, refined, out / "closed_loop_md", args.closed_loop_sizes, args.smoke) \
        if args.closed_loop_sizes else None
    summary = json.loads((run / "summary.json").read_text())
    truth_cell = synthetic.get("truth_cell", {})

    lines = [f"# g-C3N4 refinement report: `{run.name}`", "",
             f"Base model `{base_file.name}`; refined parameters `final_model.pt`, native file "
             f"`{native_model_file(run).name}`. Written by examples/gcn/report.py in "
             f"{time.perf_counter() - t0:.0f} s.", "", f"## Targets ({ensemble} from the truth's cell, "
             f"{args.md_ps:g} ps per model, fresh seeds)", ""]
    rows = [["target", "χ²/point base", "χ²/point refined", "reduction", "RMSE base", "RMSE refined"]]
    for name in results["base"].chi2_per_point:
        b, r = results["base"].chi2_per_point[name], results["refined"].chi2_per_point[name]
        rows.append([name, f"{b:.3g}", f"{r:.3g}", f"{b / r:.2f}×" if r > 0 else "–",
                     f"{results['base'].rmse[name]:.4g}", f"{results['refined'].rmse[name]:.4g}"])
    lines += table(rows) + [""]
    for name in ("base", "refined"):
        m = results[name]
        if m.n_thin_frames:
            lines += [f"**{name}: {m.n_thin_frames} of {m.n_thin_frames + m.n_frames} frames** had a cell thinner than "
                      "2·r_max and are left out of S(Q), G(r) and the partials (spacing and density use every frame).", ""]
    rows = [["model", "interlayer spacing d (Å)", "density (g/cm³)"]]
    for name in ("base", "refined"):
        m = results[name]
        rows.append([name, f"{m.spacing_A:.3f} ± {m.spacing_se_A:.3f}",
                     f"{m.density_g_per_cm3:.3f} ± {m.density_se_g_per_cm3:.3f}"])
    if truth_cell:
        rows.append(["truth (base + D3, NPT)", f"{truth_cell['spacing_A']:.3f} ± {truth_cell['spacing_se_A']:.3f}",
                     f"{truth_cell['density_g_per_cm3']:.3f} ± {truth_cell['density_se_g_per_cm3']:.3f}"])
    rows.append(["measured (XRD (002))", "3.22–3.25", ""])
    lines += table(rows) + ["", "![targets](targets.png)", ""]
    if native is not None:
        lines += [f"### The refined model file through its own tool ({native_tool_file(run).name}, ASE Langevin, "
                  f"{args.native_ps:g} ps, {native.n_frames} frames)", ""]
        rows = [["target", "χ²/point vs data: native tool", "χ²/point vs data: exprefine",
                 "mean ((native − exprefine)/σ)²"]]
        for name in native.chi2_per_point:
            rows.append([name, f"{native.chi2_per_point[name]:.3g}", f"{results['refined'].chi2_per_point[name]:.3g}",
                         f"{native_vs_exprefine.get(name, float('nan')):.3g}"])
        lines += table(rows) + [""]
    lines += ["## Partial g(r) vs the truth's", ""]
    rows = [["model", "C–N bond peak (Å)", "RMSE g_CC", "RMSE g_CN", "RMSE g_NN"]]
    for name in ("base", "refined"):
        m = results[name]
        rows.append([name, f"{m.cn_bond_peak_A:.4f}"] + [f"{m.partial_rmse_vs_truth[k]:.3f}" for k in truth])
    lines += table(rows) + [
        "", f"Bond peak shift refined − base: {results['refined'].cn_bond_peak_A - results['base'].cn_bond_peak_A:+.4f} Å "
        "(goal: within ±0.01 Å).", "", "![partials](partials.png)", "",
        f"## Held-out label frames ({n_test} frames of the run's DFT test split)", ""]
    rows = [["model", "vs", "energy RMSE (meV/atom)", "force RMSE (meV/Å)", "stress RMSE (meV/Å³)"]]
    for key, e in dft.items():
        model, ref = key.split("_vs_")
        rows.append([model, ref, f"{e['energy_rmse_meV_per_atom']:.2f}", f"{e['force_rmse_meV_per_A']:.1f}",
                     f"{e['stress_rmse_meV_per_A3']:.2f}" if e["stress_rmse_meV_per_A3"] is not None else "–"])
    lines += table(rows) + ["", "## Cell size, interlayer spacing and density (NPT 300 K, 1 bar, c free)", ""]
    rows = [["model", "cell", "atoms", "d (Å)", "ρ (g/cm³)", "E vs label (meV/atom, SD)", "F vs label (meV/Å)",
             "E vs truth (meV/atom, RMSE / SD)", "F vs truth (meV/Å)"]]
    for name, res in (("base", sizes_base), ("refined", sizes_refined)):
        for s in res["sizes"]:
            rows.append([name, s["size"], str(s["n_atoms"]), f"{s['spacing_A']:.3f} ± {s['spacing_se_A']:.3f}",
                         f"{s['density_g_per_cm3']:.3f} ± {s['density_se_g_per_cm3']:.3f}",
                         f"{s['energy_sd_label_meV_per_atom']:.2f}", f"{s['force_rmse_label_meV_per_A']:.0f}",
                         f"{s['energy_rmse_truth_meV_per_atom']:.1f} / {s['energy_sd_truth_meV_per_atom']:.2f}",
                         f"{s['force_rmse_truth_meV_per_A']:.0f}"])
    if truth_cell:
        rows.append(["truth (base + D3)", "synthetic cell", str(synthetic.get("n_atoms", "")),
                     f"{truth_cell['spacing_A']:.3f} ± {truth_cell['spacing_se_A']:.3f}",
                     f"{truth_cell['density_g_per_cm3']:.3f} ± {truth_cell['density_se_g_per_cm3']:.3f}",
                     "", "", "", ""])
    rows.append(["measured (XRD)", "", "", "3.22–3.25", "", "", "", "", ""])
    lines += table(rows) + [
        "", f"Figures: `{relative_to_repo(tr_out / base_file.stem / 'transferability.png')}`, "
        f"`{relative_to_repo(tr_out / (run.name + '_refined') / 'transferability.png')}`.", "",
        *(closed_loop_lines(loop, args.closed_loop_sizes) if loop else [])]
    write_markdown(out, run, lines)
    (out / "report.json").write_text(json.dumps({
        "targets": {k: asdict(v) for k, v in results.items()}, "dft_test": dft,
        "native_tool": None if native is None else {"run": asdict(native), "chi2_vs_exprefine": native_vs_exprefine},
        "n_test_frames": n_test,
        "sizes_base": sizes_base["sizes"], "sizes_refined": sizes_refined["sizes"], "truth_cell": truth_cell,
        "closed_loop": loop,
        "refinement": {k: summary.get(k) for k in ("n_updates", "n_samplings", "wall_time_s")}}, indent=1))
    print(f"→ {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
