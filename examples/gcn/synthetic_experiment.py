"""A synthetic neutron "experiment" on g-C3N4 from a model of truth quality (issue 5, part 6).

The truth (full GFN1-xTB) is too slow for long MD here, and it differs from the label method
(what the base MLIP learned) by exactly the D3(BJ) term (tests/test_tblite_reference.py). So
the truth-quality model is the base MLIP plus that term from the ``dftd3`` package
(:class:`exprefine.potentials.D3Dispersion`, GFN1's parameters). Stages, each kept on disk
under ``--work`` and resumed when the script runs again:

1. ``check``: the truth-quality model against direct GFN1-xTB ("truth") single points on
   frames of a short 300 K run of the 2×2 bilayer (energy and force RMSE), and the same for the
   base model alone (how far the label level is from the truth).
2. ``npt``: 300 K, 1 bar (stochastic cell rescaling of c only; the in-plane lattice stays at
   the structure builder's a, set by the covalent bonds that label and truth share, while the
   base model's in-plane stress is off by ~1 GPa) of the experiment cell (AB stack,
   ``--layers`` layers, ``--supercell`` in-plane) → the truth's cell: interlayer spacing d and
   density (mean ± block standard error).
3. ``nvt``: Langevin NVT on that mean cell, in segments of ``--segment-ps`` (each saved).
4. ``observables``: the neutron Faber–Ziman S(Q) (Fourier route from the partials up to
   ``--r-max-A``, Lorch window in r) on 0.3–``--q-max``, the reduced PDF G(r) sent through the
   data's Q range (Q_max = ``--q-max``, Lorch window), and the partial g(r) of the truth.
   Noise: S(Q) gets independent Gaussian errors σ_S(Q) = ``--sigma-s0`` + ``--sigma-s1``·Q
   (statistics and normalisation worsen with Q in real data); G(r) gets the same errors sent
   through the sine transform that reduces S(Q) to G(r) (Lorch window, Q_max), which is linear:
   G_noise = T ε and σ_G(r)² = Σ_k T_rk² σ_k² (independent ε_k; neighbouring r correlated).

Outputs (``--out``, default ``examples/gcn/data/``): ``synthetic_truth_cell.extxyz`` (the
truth's mean cell with the last NPT frame's atoms: the cell to refine in), ``synthetic_sq_neutron.csv`` (Q_inv_A, S,
sigma), ``synthetic_gr_neutron.csv`` (r_A, G_inv_A2, sigma), ``synthetic_partials_truth.csv``
(r_A, g_CC, g_CN, g_NN, noise-free), ``synthetic_experiment.json`` (every setting, the truth's
cell, the check) and ``synthetic_experiment.png``. A refinement must compute its S(Q) and G(r)
with the same settings (r_max, Lorch, Q_max): they are in the JSON and data/README.md.

    export OMP_NUM_THREADS=1
    python examples/gcn/synthetic_experiment.py --model examples/gcn/models/base_deepmd.pt
    python examples/gcn/synthetic_experiment.py --supercell 4 4 --layers 8 --r-max-A 10 ...  # GPU size
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from common import setup

HERE = Path(__file__).resolve().parent  # on sys.path when run as a script: transferability.py imports


@dataclass
class CellStats:
    """The experiment cell the truth-quality model holds at T and P (Å, g/cm³; mean ± block SE)."""

    spacing_A: float
    spacing_se_A: float
    density_g_per_cm3: float
    density_se_g_per_cm3: float
    number_density_per_A3: float
    n_frames: int


@dataclass
class CheckResult:
    """Model vs direct GFN1-xTB ("truth") on frames of the 2×2 bilayer (meV/atom, meV/Å)."""

    n_frames: int
    n_atoms: int
    energy_rmse_meV_per_atom: float
    energy_sd_meV_per_atom: float
    force_rmse_meV_per_A: float
    base_only_energy_rmse_meV_per_atom: float
    base_only_force_rmse_meV_per_A: float
    truth_label_s_per_frame: float


def relative_to_repo(path: Path) -> str:
    """``path`` relative to the repository (results record no machine's absolute paths)."""
    try:
        return str(path.resolve().relative_to(HERE.parents[1]))
    except ValueError:
        return str(path)


def truth_model(path: Path):
    """Base MLIP + GFN1's D3(BJ): a Potential of truth quality if the MLIP has label quality."""
    from exprefine.potentials import D3Dispersion, SumPotential, load_model_file
    from exprefine.reference import gfn1_d3

    base = load_model_file(path)
    return base, SumPotential([base, D3Dispersion(gfn1_d3())])


def sampler_settings(args, equilibration_ps: float, production_ps: float, seed: int, barostat: bool):
    from exprefine.sampling import BarostatSettings, SamplerSettings

    return SamplerSettings(
        integrator="baoab", temperature_K=args.temperature_K, timestep_fs=args.timestep_fs,
        friction_per_ps=args.friction_per_ps,
        n_equilibration_steps=int(round(equilibration_ps * 1000 / args.timestep_fs)),
        n_production_steps=int(round(production_ps * 1000 / args.timestep_fs)),
        stride_steps=int(round(args.frame_interval_fs / args.timestep_fs)), seed=seed,
        barostat=BarostatSettings(pressure_bar=args.pressure_bar, time_fs=args.barostat_time_fs,
                                  coupling="uniaxial_z") if barostat else None,
    )


def run_or_load(path: Path, potential, start, settings, progress: bool):
    """The trajectory at ``path``, or a new run saved there."""
    from exprefine.sampling import sample
    from exprefine.trajectory import Trajectory

    if path.exists():
        return Trajectory.load(path)
    result = sample(potential, start, settings, progress=progress)
    result.trajectory.save(path)
    print(f"  {path.name}: {result.n_steps} steps, {result.n_steps / result.wall_time_s:.1f} steps/s", flush=True)
    return result.trajectory


# ----------------------------------------------------------------------------------- check
def stage_check(args, base, model) -> CheckResult:
    """Truth-quality model and base model vs direct GFN1-xTB on MD frames of the 2×2 bilayer."""
    from exprefine.reference import label_frames
    from exprefine.state import from_atoms
    from exprefine.structures import gcn_stack

    start = from_atoms(gcn_stack(2, "AB", args.start_spacing_A, supercell=args.check_supercell))
    eq_ps, prod_ps = args.check_md_ps
    traj = run_or_load(args.work / "check_md.pt", model, start,
                       sampler_settings(args, eq_ps, prod_ps, args.seed + 7, barostat=True), not args.no_progress)
    atoms = traj.to_atoms()
    picks = np.linspace(0, len(atoms) - 1, args.check_frames).round().astype(int)
    run = label_frames([atoms[i] for i in picks], "truth", args.work / "check_truth.extxyz")
    de, df, de_base, df_base = [], [], [], []
    for frame in run.frames:
        state = from_atoms(frame)
        n = len(frame)
        for potential, e_out, f_out in ((model, de, df), (base, de_base, df_base)):
            out = potential.compute(state, forces=True)
            e_out.append((float(out.energy_eV[0]) - frame.get_potential_energy()) / n * 1000)
            f_out.append((out.forces_eV_per_A.detach().double().numpy() - frame.get_forces()).ravel() * 1000)
    de, de_base = np.array(de), np.array(de_base)
    return CheckResult(
        n_frames=len(run.frames), n_atoms=len(run.frames[0]),
        energy_rmse_meV_per_atom=float(np.sqrt(np.mean(de ** 2))), energy_sd_meV_per_atom=float(de.std()),
        force_rmse_meV_per_A=float(np.sqrt(np.mean(np.concatenate(df) ** 2))),
        base_only_energy_rmse_meV_per_atom=float(np.sqrt(np.mean(de_base ** 2))),
        base_only_force_rmse_meV_per_A=float(np.sqrt(np.mean(np.concatenate(df_base) ** 2))),
        truth_label_s_per_frame=float(np.mean([float(a.info.get("label_wall_s", float("nan"))) for a in run.frames])),
    )


# ------------------------------------------------------------------------------ npt, nvt
def cell_stats(trajectory, n_layers: int) -> CellStats:
    """Interlayer spacing and density of the NPT frames (transferability.spacing_and_density)."""
    from common import spacing_and_density

    d, d_se, rho, rho_se = spacing_and_density(trajectory, n_layers)
    number_density = float((trajectory.n_atoms / trajectory.volumes_A3().double()).mean())
    return CellStats(d, d_se, rho, rho_se, number_density, trajectory.n_frames)


def mean_cell_start(trajectory, frame: int = -1):
    """NPT frame ``frame`` (default the last), scaled onto the mean cell of the run (a State)."""
    from dataclasses import replace

    import torch

    cells = trajectory.cells_A.double()
    mean = cells.mean(dim=0)
    k = frame % trajectory.n_frames
    picked = trajectory.as_state(slice(k, k + 1))
    fractional = picked.positions.double() @ torch.linalg.inv(picked.cell[0].double())
    return replace(picked, positions=fractional @ mean, cell=mean[None])


def chain_start_frame(n_frames: int, chain: int, n_chains: int) -> int:
    """The NPT frame chain ``chain`` of ``n_chains`` starts from: the last, then evenly earlier ones."""
    return n_frames - 1 - chain * (n_frames // n_chains)


def segment_path(args, chain: int, k: int) -> Path:
    """Chain 0 keeps the single-chain names (nvt_000.pt, ...), so earlier work dirs are reused."""
    return args.work / (f"nvt_{k:03d}.pt" if chain == 0 else f"nvt_c{chain}_{k:03d}.pt")


def stage_nvt(args, model, npt, chains: list[int]) -> list:
    """NVT segments on the mean NPT cell, ``--production-ps`` split evenly over ``--nvt-chains``
    independent chains (each from its own NPT frame, its own seeds, its own equilibration); within a
    chain each segment continues from the last frame of the one before (velocities drawn afresh: the
    Langevin thermostat forgets them within 1/γ). Only the chains in ``chains`` are run."""
    per_chain_ps = args.production_ps / args.nvt_chains
    n_segments = math.ceil(per_chain_ps / args.segment_ps - 1e-9)
    segments = []
    for chain in chains:
        state = mean_cell_start(npt, chain_start_frame(npt.n_frames, chain, args.nvt_chains))
        for k in range(n_segments):
            eq = args.nvt_equilibration_ps if k == 0 else 0.0
            seed = args.seed + 100 + k + 1000 * chain
            traj = run_or_load(segment_path(args, chain, k), model, state,
                               sampler_settings(args, eq, args.segment_ps, seed, False), not args.no_progress)
            segments.append(traj)
            state = traj.as_state(slice(traj.n_frames - 1, traj.n_frames))
    return segments


# ---------------------------------------------------------------------------- observables
@dataclass
class Curves:
    """Noise-free ensemble averages of the truth-quality model, with the data grids."""

    q_inv_A: np.ndarray
    s: np.ndarray
    r_A: np.ndarray
    g_pdf_inv_A2: np.ndarray
    partial_r_A: np.ndarray
    partials: dict[str, np.ndarray]


def observables(args, trajectory) -> Curves:
    from exprefine.observables import RadialDistribution
    from exprefine.observables.scattering import PairDistributionFunction, StructureFactor

    q = np.round(np.arange(args.q_min, args.q_max + 1e-9, args.q_step), 6)
    sq = StructureFactor(q, radiation="neutron", r_max_A=args.r_max_A, bin_width_A=args.bin_width_A,
                         r_window="lorch")
    pdf = PairDistributionFunction(r_max_A=args.r_max_A, bin_width_A=args.bin_width_A, radiation="neutron",
                                   q_max_inv_A=args.q_max, lorch=True)
    s = sq.evaluate(trajectory).double().mean(dim=0).numpy()
    g = pdf.evaluate(trajectory).double().mean(dim=0).numpy()
    partials = {}
    r_partial = None
    for a, b in (("C", "C"), ("C", "N"), ("N", "N")):
        rdf = RadialDistribution(args.r_max_A, bin_width_A=args.bin_width_A, species=(a, b))
        partials[f"g_{a}{b}"] = rdf.evaluate(trajectory).double().mean(dim=0).numpy()
        r_partial = rdf.grid().double().numpy()
    return Curves(q, s, pdf.grid().double().numpy(), g, r_partial, partials)


def noise_transfer_matrix(q: np.ndarray, r: np.ndarray, q_max: float) -> np.ndarray:
    """[n_r, n_q] T with G(r) = T @ (S(Q) − 1) for data reduced with exprefine's own transform
    (:func:`~exprefine.observables.scattering.pdf_from_structure_factor`, Lorch window, Q_max):
    the transform is linear in S − 1, so its columns are the responses to unit errors."""
    import torch

    from exprefine.observables.scattering import pdf_from_structure_factor

    unit = 1.0 + torch.eye(q.size, dtype=torch.float64)
    columns = pdf_from_structure_factor(torch.as_tensor(q), unit, torch.as_tensor(r), q_max_inv_A=q_max, lorch=True)
    return columns.numpy().T


def noisy_data(args, curves: Curves, transfer: np.ndarray | None = None):
    """(S + ε, σ_S, G + Tε, σ_G) with ε ~ N(0, σ_S²) from ``--noise-seed`` and σ_G² = T² σ_S²
    (``transfer``: T if already computed)."""
    rng = np.random.default_rng(args.noise_seed)
    sigma_s = args.sigma_s0 + args.sigma_s1 * curves.q_inv_A
    eps = rng.normal(size=curves.q_inv_A.shape) * sigma_s
    t = noise_transfer_matrix(curves.q_inv_A, curves.r_A, args.q_max) if transfer is None else transfer
    sigma_g = np.sqrt((t ** 2) @ (sigma_s ** 2))
    return curves.s + eps, sigma_s, curves.g_pdf_inv_A2 + t @ eps, np.maximum(sigma_g, 1e-6)


def write_csv(path: Path, header: list[str], columns: list[np.ndarray], comments: list[str]) -> None:
    with path.open("w", newline="") as f:
        for line in comments:
            f.write(f"# {line}\n")
        w = csv.writer(f)
        w.writerow(header)
        for row in zip(*columns):
            w.writerow([f"{v:.6g}" for v in row])


def plot(path: Path, curves: Curves, s_noisy, sigma_s, g_noisy, sigma_g) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13.0, 3.6))
    ax = axes[0]
    ax.fill_between(curves.q_inv_A, s_noisy - sigma_s, s_noisy + sigma_s, color="C0", alpha=0.3, lw=0)
    ax.plot(curves.q_inv_A, s_noisy, lw=0.6, label="synthetic data ± σ")
    ax.plot(curves.q_inv_A, curves.s, "k", lw=0.6, label="truth (noise-free)")
    ax.set_xlabel("Q (Å⁻¹)")
    ax.set_ylabel("S(Q), neutron")
    ax.legend(fontsize=7)
    ax = axes[1]
    ax.fill_between(curves.r_A, g_noisy - sigma_g, g_noisy + sigma_g, color="C1", alpha=0.3, lw=0)
    ax.plot(curves.r_A, g_noisy, lw=0.6, color="C1", label="synthetic data ± σ")
    ax.plot(curves.r_A, curves.g_pdf_inv_A2, "k", lw=0.6, label="truth (noise-free)")
    ax.set_xlabel("r (Å)")
    ax.set_ylabel("G(r) (Å⁻²)")
    ax.legend(fontsize=7)
    ax = axes[2]
    for name, g in curves.partials.items():
        ax.plot(curves.partial_r_A, g, lw=0.8, label=name)
    ax.set_xlabel("r (Å)")
    ax.set_ylabel("partial g(r), truth")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=HERE / "models" / "base_deepmd.pt",
                   help="base MLIP trained on the label method (MACE .model or DeePMD .pt/.pth)")
    p.add_argument("--supercell", type=int, nargs=2, default=(2, 2), metavar=("N1", "N2"))
    p.add_argument("--layers", type=int, default=4, help="layers per cell along c (AB stacking, even)")
    p.add_argument("--start-spacing-A", type=float, default=3.25)
    p.add_argument("--temperature-K", type=float, default=300.0)
    p.add_argument("--pressure-bar", type=float, default=1.0)
    p.add_argument("--timestep-fs", type=float, default=1.0)
    p.add_argument("--friction-per-ps", type=float, default=5.0)
    p.add_argument("--barostat-time-fs", type=float, default=500.0)
    p.add_argument("--frame-interval-fs", type=float, default=25.0)
    p.add_argument("--npt-equilibration-ps", type=float, default=3.0)
    p.add_argument("--npt-production-ps", type=float, default=6.0)
    p.add_argument("--nvt-equilibration-ps", type=float, default=1.0)
    p.add_argument("--production-ps", type=float, default=20.0, help="NVT production in all")
    p.add_argument("--segment-ps", type=float, default=2.5, help="NVT production per saved segment")
    p.add_argument("--nvt-chains", type=int, default=1,
                   help="independent NVT chains sharing --production-ps (each from its own NPT frame)")
    p.add_argument("--chain", type=int, default=None,
                   help="run only this NVT chain and stop (several processes can run the chains at once)")
    p.add_argument("--check-frames", type=int, default=4)
    p.add_argument("--check-supercell", type=int, nargs=2, default=(2, 2), metavar=("N1", "N2"),
                   help="in-plane cell of the bilayer checked against direct GFN1-xTB")
    p.add_argument("--check-md-ps", type=float, nargs=2, default=(1.0, 2.0), metavar=("EQ", "PROD"),
                   help="equilibration and production of the check's MD")
    p.add_argument("--r-max-A", type=float, default=6.0, help="partials up to here (≤ half the smallest cell height)")
    p.add_argument("--bin-width-A", type=float, default=0.02)
    p.add_argument("--q-min", type=float, default=0.3)
    p.add_argument("--q-max", type=float, default=30.0)
    p.add_argument("--q-step", type=float, default=0.02)
    p.add_argument("--sigma-s0", type=float, default=0.005, help="σ_S at Q = 0")
    p.add_argument("--sigma-s1", type=float, default=0.001, help="growth of σ_S per Å⁻¹")
    p.add_argument("--noise-seed", type=int, default=2026)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", type=Path, default=HERE / "runs" / "synthetic_experiment")
    p.add_argument("--out", type=Path, default=HERE / "data")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--smoke", action="store_true",
                   help="every stage on a 28-atom bilayer for a few dozen steps (seconds; for tests): give --work and --out")
    return p


#: what --smoke sets: a 1×1 AB bilayer, a few dozen MD steps per stage, r_max within its 6 Å cell
SMOKE = {"supercell": (1, 1), "layers": 2, "check_supercell": (1, 1), "check_md_ps": (0.005, 0.01),
         "check_frames": 1, "npt_equilibration_ps": 0.01, "npt_production_ps": 0.02, "nvt_equilibration_ps": 0.005,
         "production_ps": 0.02, "segment_ps": 0.01, "frame_interval_fs": 5.0, "r_max_A": 3.0, "q_max": 10.0,
         "q_step": 0.1, "no_progress": True}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.smoke:
        vars(args).update(SMOKE)
    setup(args.threads)
    from ase.io import write as ase_write

    from exprefine.state import from_atoms
    from exprefine.structures import gcn_stack
    from exprefine.trajectory import Trajectory

    if args.layers < 2 or args.layers % 2:
        print("synthetic_experiment: error: --layers must be even (AB stacking) and ≥ 2", file=sys.stderr)
        return 2
    if args.nvt_chains < 1 or (args.chain is not None and not 0 <= args.chain < args.nvt_chains):
        print(f"synthetic_experiment: error: --chain must lie in 0 … --nvt-chains − 1 = {args.nvt_chains - 1}",
              file=sys.stderr)
        return 2
    try:
        base, model = truth_model(args.model)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        print(f"synthetic_experiment: error: {exc}", file=sys.stderr)
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    print("check: truth-quality model vs direct GFN1-xTB", flush=True)
    check = stage_check(args, base, model)
    print(f"check: {check.n_frames} frames of {check.n_atoms} atoms: base + D3 vs truth E {check.energy_rmse_meV_per_atom:.2f} "
          f"meV/atom (SD {check.energy_sd_meV_per_atom:.2f}), F {check.force_rmse_meV_per_A:.0f} meV/Å; base alone "
          f"E {check.base_only_energy_rmse_meV_per_atom:.1f} meV/atom, F {check.base_only_force_rmse_meV_per_A:.0f} meV/Å",
          flush=True)

    cell = gcn_stack(args.layers, "AB", args.start_spacing_A, supercell=tuple(args.supercell))
    print(f"npt: {len(cell)} atoms, {args.npt_equilibration_ps} + {args.npt_production_ps} ps", flush=True)
    npt = run_or_load(args.work / "npt.pt", model, from_atoms(cell),
                      sampler_settings(args, args.npt_equilibration_ps, args.npt_production_ps, args.seed, True),
                      not args.no_progress)
    stats = cell_stats(npt, args.layers)
    print(f"npt: d = {stats.spacing_A:.4f} ± {stats.spacing_se_A:.4f} Å, "
          f"ρ = {stats.density_g_per_cm3:.4f} ± {stats.density_se_g_per_cm3:.4f} g/cm³", flush=True)

    print(f"nvt: {args.production_ps} ps in segments of {args.segment_ps} ps", flush=True)
    start = mean_cell_start(npt)
    cell_file = args.out / "synthetic_truth_cell.extxyz"
    start_atoms = start.to_atoms()[0]
    start_atoms.info.update(source="synthetic_experiment.py: last NPT frame of the truth-quality model on its mean cell",
                            interlayer_spacing_A=stats.spacing_A, n_layers=args.layers)
    ase_write(cell_file, start_atoms)
    if args.chain is not None:
        stage_nvt(args, model, npt, [args.chain])
        print(f"nvt: chain {args.chain} of {args.nvt_chains} done; run without --chain to write the data", flush=True)
        return 0
    trajectory = Trajectory.concatenate(stage_nvt(args, model, npt, list(range(args.nvt_chains))))
    curves = observables(args, trajectory)
    s_noisy, sigma_s, g_noisy, sigma_g = noisy_data(args, curves)

    composition = {"C": int((npt.atomic_numbers == 6).sum()), "N": int((npt.atomic_numbers == 7).sum())}
    meta = [f"synthetic neutron data of g-C3N4 (AB, pristine) at {args.temperature_K} K "
            "from examples/gcn/synthetic_experiment.py",
            f"model: {args.model.name} + GFN1 D3(BJ); cell {args.supercell[0]}x{args.supercell[1]}x{args.layers} layers, "
            f"{len(cell)} atoms, number density {stats.number_density_per_A3:.6f} / A^3",
            f"processing: partials to r_max {args.r_max_A} A (bins {args.bin_width_A} A), Lorch window; "
            f"G(r) through Q_max {args.q_max} 1/A with a Lorch window"]
    write_csv(args.out / "synthetic_sq_neutron.csv", ["Q_inv_A", "S", "sigma"], [curves.q_inv_A, s_noisy, sigma_s],
              meta + [f"sigma_S(Q) = {args.sigma_s0} + {args.sigma_s1} Q; noise seed {args.noise_seed}"])
    write_csv(args.out / "synthetic_gr_neutron.csv", ["r_A", "G_inv_A2", "sigma"], [curves.r_A, g_noisy, sigma_g],
              meta + ["G noise: the S(Q) noise sent through the same sine transform"])
    write_csv(args.out / "synthetic_partials_truth.csv", ["r_A"] + list(curves.partials),
              [curves.partial_r_A] + list(curves.partials.values()), meta + ["noise-free partial g(r) of the truth"])
    summary = {
        "settings": {k: (relative_to_repo(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "n_atoms": len(cell), "composition": composition, "truth_cell": asdict(stats),
        "nvt_frames": trajectory.n_frames, "check": asdict(check),
        "wall_s_this_run": time.perf_counter() - t0,
    }
    (args.out / "synthetic_experiment.json").write_text(json.dumps(summary, indent=1))
    plot(args.out / "synthetic_experiment.png", curves, s_noisy, sigma_s, g_noisy, sigma_g)
    print(f"→ {args.out}/synthetic_sq_neutron.csv, synthetic_gr_neutron.csv, synthetic_partials_truth.csv, "
          "synthetic_experiment.{json,png}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
