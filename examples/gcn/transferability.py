"""Transferability of a g-C3N4 MLIP to larger cells (issue 5, part 5): errors vs cell size.

For each cell size (AB bilayers, 2 layers per cell, 2×2 = the training cell, then 2×, 4×, 8×
larger in-plane) the model runs Langevin MD at 300 K and 1 bar (stochastic cell rescaling of c
only, the in-plane lattice fixed: ``uniaxial_z``). A few frames, evenly spaced in the
production run, are labelled with the "label" method (GFN1-xTB without dispersion, what the
model was trained on) and the "truth" is label + the exact D3(BJ) difference (the dftd3
package; truth − label is that term to 1–2 meV per cell, tests/test_tblite_reference.py). The
model's energy and force errors against both, per size, go to a table and a plot, with the
interlayer spacing and density the model produced (mean ± block standard error).

Every step is kept on disk under ``--out/<tag>/`` (default tag: the model file's stem): the trajectory of each size
(``md_<size>.npz``) and the labels (``labels_<size>.extxyz``, resumable frame by frame), so a
killed run continues where it stopped. The trajectories are not committed (they are large); a
size whose trajectory is gone but whose MD settings (``md_<size>.json``), labelled frames and
row in the previous ``transferability.json`` of a model file of the same name are there is not run again:
its spacing and density are taken from that row and its errors recomputed on the labelled frames.
Label cost grows like N³ (≈ 4 s for 112 atoms, 18 s for 224, ≈ 2 min for 448, ≈ 15 min for 896
atoms on one core).

    export OMP_NUM_THREADS=1
    python examples/gcn/transferability.py --model examples/gcn/models/base_deepmd.pt
    python examples/gcn/transferability.py --model ... --sizes 2x2 4x2 4x4 8x4 --frames 4
    # → results/transferability/<model>/transferability.{json,csv,png}
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from common import MEASURED_SPACING_A, MEASURED_SPACING_LABEL, relative_to_repo, run_potential, setup, spacing_and_density

HERE = Path(__file__).resolve().parent


@dataclass
class SizeResult:
    """One cell size: the MD the model produced and its errors on the labelled frames.

    Energies in meV/atom, forces in meV/Å, lengths in Å, density in g/cm³.
    """

    size: str
    n_atoms: int
    md_ps: float
    md_steps_per_s: float
    spacing_A: float
    spacing_se_A: float
    density_g_per_cm3: float
    density_se_g_per_cm3: float
    n_labelled: int
    label_s_per_frame: float | None
    energy_rmse_label_meV_per_atom: float
    energy_mean_error_label_meV_per_atom: float
    energy_sd_label_meV_per_atom: float
    force_rmse_label_meV_per_A: float
    energy_rmse_truth_meV_per_atom: float
    energy_mean_error_truth_meV_per_atom: float
    energy_sd_truth_meV_per_atom: float
    force_rmse_truth_meV_per_A: float


def parse_size(text: str) -> tuple[int, int]:
    try:
        n1, n2 = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"cell size {text!r}: use N1xN2, e.g. 4x4") from None
    if min(n1, n2) < 2:
        raise ValueError(f"cell size {text!r}: at least 2x2 in-plane for a Γ-point method")
    return n1, n2


def md_settings(args) -> dict[str, float]:
    """The settings that make a size's trajectory (stored with it; a cached one must match)."""
    keys = ("temperature_K", "pressure_bar", "start_spacing_A", "equilibration_ps", "production_ps",
            "frame_interval_fs", "timestep_fs", "friction_per_ps", "barostat_time_fs", "seed")
    return {k: getattr(args, k) for k in keys}


def run_md(potential, size: tuple[int, int], args, path: Path):
    """NPT (uniaxial_z) MD of the AB bilayer of ``size``; the trajectory is saved to ``path``."""
    import torch

    from exprefine.sampling import BarostatSettings, SamplerSettings, sample
    from exprefine.state import from_atoms
    from exprefine.structures import gcn_stack
    from exprefine.trajectory import Trajectory

    wanted = md_settings(args)
    if path.exists():
        meta = json.loads(path.with_suffix(".json").read_text())
        if meta.get("settings") != wanted:
            raise ValueError(f"{path} was run with other MD settings ({meta.get('settings')}); "
                             "use another --tag or delete it")
        return Trajectory.load(path), meta
    atoms = gcn_stack(2, "AB", args.start_spacing_A, supercell=size)
    settings = SamplerSettings(
        integrator="baoab", temperature_K=args.temperature_K, timestep_fs=args.timestep_fs,
        friction_per_ps=args.friction_per_ps,
        n_equilibration_steps=int(round(args.equilibration_ps * 1000 / args.timestep_fs)),
        n_production_steps=int(round(args.production_ps * 1000 / args.timestep_fs)),
        stride_steps=int(round(args.frame_interval_fs / args.timestep_fs)), seed=args.seed,
        barostat=BarostatSettings(pressure_bar=args.pressure_bar, time_fs=args.barostat_time_fs,
                                  coupling="uniaxial_z"),
    )
    state = from_atoms(atoms, dtype=torch.float64)
    result = sample(potential, state, settings, progress=not args.no_progress)
    result.trajectory.save(path)
    meta = {"wall_s": result.wall_time_s, "n_steps": result.n_steps,
            "steps_per_s": result.n_steps / result.wall_time_s, "settings": wanted}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    return result.trajectory, meta


def label_frames_of(trajectory, n_frames: int, cache: Path, progress: bool) -> tuple[list, list[float]]:
    """The label method on ``n_frames`` evenly spaced production frames (cached, resumable)."""
    from exprefine.reference import label_frames

    atoms = trajectory.to_atoms()
    picks = np.linspace(0, len(atoms) - 1, n_frames).round().astype(int)
    frames = [atoms[i] for i in picks]
    for i, a in zip(picks, frames):
        a.info["md_frame"] = int(i)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_frames, desc=f"label {cache.stem}", unit="frame", dynamic_ncols=True)

    def tick(i, n, labelled):
        if bar is not None:
            bar.update(1)

    run = label_frames(frames, "label", cache, progress=tick)
    if bar is not None:
        bar.close()
    return run.frames, [float(a.info["label_wall_s"]) for a in run.frames if "label_wall_s" in a.info]


def errors(potential, frames: list) -> dict[str, float]:
    """Model vs label and vs truth (= label + D3): energy RMSE, mean error and its spread (meV/atom), force
    RMSE (meV/Å). Against the truth the mean error is mostly the missing D3 energy of the layers themselves
    (≈ −75 meV/atom, nearly the same in every frame): no structural datum can show it, so the spread
    (the standard deviation over frames) is the part a refinement can change."""
    from exprefine.reference import d3_dispersion
    from exprefine.state import from_atoms

    de = {"label": [], "truth": []}
    df = {"label": [], "truth": []}
    for atoms in frames:
        out = potential.compute(from_atoms(atoms), forces=True)
        e_model = float(out.energy_eV[0])
        f_model = out.forces_eV_per_A.detach().double().numpy()
        e_label, f_label = atoms.get_potential_energy(), atoms.get_forces()
        d3 = d3_dispersion(atoms)
        n = len(atoms)
        de["label"].append((e_model - e_label) / n)
        de["truth"].append((e_model - e_label - d3.energy_eV) / n)
        df["label"].append((f_model - f_label).ravel())
        df["truth"].append((f_model - f_label - d3.forces_eV_per_A).ravel())
    out = {}
    for ref in ("label", "truth"):
        e = np.array(de[ref]) * 1000
        f = np.concatenate(df[ref]) * 1000
        out[f"energy_rmse_{ref}_meV_per_atom"] = float(np.sqrt(np.mean(e ** 2)))
        out[f"energy_mean_error_{ref}_meV_per_atom"] = float(e.mean())
        out[f"energy_sd_{ref}_meV_per_atom"] = float(e.std())  # the error without its constant offset
        out[f"force_rmse_{ref}_meV_per_A"] = float(np.sqrt(np.mean(f ** 2)))
    return out


def plot(results: list[SizeResult], model_name: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r.n_atoms for r in results]
    fig, axes = plt.subplots(1, 3, figsize=(12.0, 3.6))
    for ref, style in (("label", "o-"), ("truth", "s--")):
        axes[0].plot(n, [getattr(r, f"energy_sd_{ref}_meV_per_atom") for r in results], style,
                     label=f"vs {ref} (offset removed)")
        axes[1].plot(n, [getattr(r, f"force_rmse_{ref}_meV_per_A") for r in results], style, label=f"vs {ref}")
    axes[0].set_ylabel("energy error SD over frames (meV/atom)")
    axes[1].set_ylabel("force RMSE (meV/Å)")
    axes[2].errorbar(n, [r.spacing_A for r in results], yerr=[r.spacing_se_A for r in results], fmt="o-",
                     label=f"{model_name}, 300 K, 1 bar")
    axes[2].axhspan(*MEASURED_SPACING_A, color="0.85", label=MEASURED_SPACING_LABEL)
    axes[2].set_ylabel("interlayer spacing d (Å)")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(n, [str(x) for x in n])
        ax.set_xlabel("atoms per cell (training cell: 112)")
        ax.legend(fontsize=7)
    fig.suptitle(f"{model_name}: errors on MD frames of larger cells ({results[0].n_labelled} labelled frames per size)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=HERE / "models" / "base_deepmd.pt",
                   help="MACE .model or DeePMD .pt/.pth file (default models/base_deepmd.pt)")
    p.add_argument("--sizes", nargs="+", default=["2x2", "4x2", "4x4"],
                   help="in-plane supercells of the AB bilayer (2x2 = 112 atoms, the training cell)")
    p.add_argument("--frames", type=int, default=4, help="labelled frames per size")
    p.add_argument("--temperature-K", type=float, default=300.0)
    p.add_argument("--pressure-bar", type=float, default=1.0)
    p.add_argument("--start-spacing-A", type=float, default=3.4)
    p.add_argument("--equilibration-ps", type=float, default=2.0)
    p.add_argument("--production-ps", type=float, default=4.0)
    p.add_argument("--frame-interval-fs", type=float, default=50.0)
    p.add_argument("--timestep-fs", type=float, default=1.0)
    p.add_argument("--friction-per-ps", type=float, default=5.0)
    p.add_argument("--barostat-time-fs", type=float, default=500.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=HERE / "results" / "transferability")
    p.add_argument("--tag", help="name of the output folder under --out (default: the model file's or run's name)")
    p.add_argument("--run", type=Path, default=None,
                   help="a refinement run folder instead of --model: its config's potential with final_model.pt")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--smoke", action="store_true",
                   help="the 112-atom 2×2 bilayer (the smallest Γ-point cell), a few dozen MD steps, "
                        "one labelled frame (seconds; for tests)")
    return p


#: what --smoke sets
SMOKE = {"sizes": ["2x2"], "frames": 1, "equilibration_ps": 0.01, "production_ps": 0.02, "frame_interval_fs": 5.0,
         "no_progress": True}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup(args.threads)
    try:
        run(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"transferability: error: {exc}", file=sys.stderr)
        return 2
    return 0


def run(args) -> dict:
    """The study for the parsed ``args`` (``build_parser().parse_args([...])``): the summary written to
    ``<out>/<tag>/transferability.json``. A ValueError or FileNotFoundError names bad input."""
    from exprefine.potentials import load_model_file

    if args.smoke:
        vars(args).update(SMOKE)
    sizes = [(s, parse_size(s)) for s in args.sizes]
    if args.frames < 1:
        raise ValueError("--frames must be ≥ 1")
    potential = run_potential(args.run) if args.run is not None else load_model_file(args.model)
    out_dir = args.out / (args.tag or (args.run.name if args.run is not None else args.model.stem))
    out_dir.mkdir(parents=True, exist_ok=True)
    return study(args, potential, sizes, out_dir)


def previous_row(args, name: str, out_dir: Path) -> SizeResult | None:
    """The row of ``name`` from an earlier run of the same model and MD settings whose trajectory is not on disk.

    None unless ``md_<name>.npz`` is missing and ``md_<name>.json`` (same settings),
    ``labels_<name>.extxyz`` (``--frames`` frames) and that size's row in ``transferability.json``
    (a ``--model`` of the same file name) all exist.
    """
    from ase.io import read

    table, meta_file = out_dir / "transferability.json", out_dir / f"md_{name}.json"
    labels = out_dir / f"labels_{name}.extxyz"
    if (out_dir / f"md_{name}.npz").exists() or not (table.exists() and meta_file.exists() and labels.exists()):
        return None
    summary = json.loads(table.read_text())
    source = args.run if args.run is not None else args.model
    if Path(summary.get("model", "")).name != Path(source).name:  # the same file, wherever it was run from
        return None
    if json.loads(meta_file.read_text()).get("settings") != md_settings(args):
        return None
    rows = [r for r in summary.get("sizes", []) if r.get("size") == name and r.get("n_labelled") == args.frames]
    if not rows or len(read(labels, index=":")) != args.frames:
        return None
    return SizeResult(**rows[0])


def study(args, potential, sizes: list[tuple[str, tuple[int, int]]], out_dir: Path) -> dict:
    """MD, labels and errors for every size; the table, JSON and plot in ``out_dir``."""
    from ase.io import read

    t0 = time.perf_counter()
    results = []
    for name, size in sizes:
        earlier = previous_row(args, name, out_dir)
        if earlier is not None:
            err = errors(potential, read(out_dir / f"labels_{name}.extxyz", index=":"))
            results.append(replace(earlier, **err))
            print(f"{name}: trajectory not on disk; spacing, density and MD figures from the previous "
                  f"transferability.json, errors recomputed on its {args.frames} labelled frames", flush=True)
            continue
        trajectory, meta = run_md(potential, size, args, out_dir / f"md_{name}.npz")
        d, d_se, rho, rho_se = spacing_and_density(trajectory)
        print(f"{name}: {trajectory.n_atoms} atoms, d = {d:.3f} ± {d_se:.3f} Å, ρ = {rho:.3f} ± {rho_se:.3f} g/cm³, "
              f"{meta['steps_per_s']:.1f} steps/s", flush=True)
        frames, label_s = label_frames_of(trajectory, args.frames, out_dir / f"labels_{name}.extxyz",
                                          not args.no_progress)
        err = errors(potential, frames)
        results.append(SizeResult(
            size=name, n_atoms=trajectory.n_atoms, md_ps=meta["n_steps"] * args.timestep_fs / 1000,
            md_steps_per_s=meta["steps_per_s"], spacing_A=d, spacing_se_A=d_se, density_g_per_cm3=rho,
            density_se_g_per_cm3=rho_se, n_labelled=len(frames),
            label_s_per_frame=float(np.mean(label_s)) if label_s else None, **err))
        r = results[-1]
        print(f"{name}: vs label E RMSE {r.energy_rmse_label_meV_per_atom:.2f} (SD {r.energy_sd_label_meV_per_atom:.2f}) "
              f"meV/atom, F {r.force_rmse_label_meV_per_A:.0f} meV/Å; vs truth E RMSE "
              f"{r.energy_rmse_truth_meV_per_atom:.2f} (SD {r.energy_sd_truth_meV_per_atom:.2f}) meV/atom, "
              f"F {r.force_rmse_truth_meV_per_A:.0f} meV/Å", flush=True)
    summary = {"model": relative_to_repo(args.run if args.run is not None else args.model),
               "settings": {k: (relative_to_repo(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "wall_s_this_run": time.perf_counter() - t0, "sizes": [asdict(r) for r in results]}
    (out_dir / "transferability.json").write_text(json.dumps(summary, indent=1))
    with (out_dir / "transferability.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(asdict(results[0])))
        w.writeheader()
        for r in results:
            w.writerow({k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else v)
                        for k, v in asdict(r).items()})
    plot(results, out_dir.name, out_dir / "transferability.png")
    print(f"→ {relative_to_repo(out_dir)}/transferability.{{json,csv,png}}")
    return summary


if __name__ == "__main__":
    sys.exit(main())
