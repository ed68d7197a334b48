"""Speed and memory of exprefine with MLIPs (MACE, DeePMD-kit) against the ASE route (prints figures).

For a small MACE (32 channels, L = 0, r_max 5 Å, 2 interactions, float32) and a small DeePMD
se_e2_a model (r_cut 5 Å, embedding [16, 32, 64], fitting [64, 64, 64], float64), both built
here with random weights scaled so that forces stay small, on g-C3N4 AB bilayers of 112 atoms
(2×2 cell) and 1,008 atoms (6×6), it measures in one run:

  * the bare model: energy + forces per call with the model's own force route (MACE:
    ``model(batch, compute_force=True)`` on a prepared graph; DeePMD: ``model(coord, atype, box)``);
  * exprefine MD (BAOAB, 0.5 fs) steps/s and the time per step over the bare call;
  * ASE's Langevin driven by the model's own ASE calculator (``MACECalculator``,
    ``deepmd.calculator.DP``) on the same cell and settings, steps/s, and the ratio;
  * exprefine MD of ``--replicas`` copies of the cell in one batch (what a DiffTRe trajectory
    uses to gather frames), in system-steps/s, against ASE's one system;
  * reweighting throughput: frames/s of the energy pass and of the chunked loss+gradient pass
    over all trainable parameters (a total g(r) target), and the peak resident memory growth of
    the gradient pass (fresh process, VmHWM reset after loading).

The issue's goals: exprefine's sampling ≥ 2× the ASE route and within 1.2× of the bare model's
energy+force time per step. The machine load is printed: compare ratios measured in one run.

Run:  python benchmarks/bench_mlip.py [--models mace deepmd] [--cells 2 6] [--steps 100] [--threads 1]
      [--replicas 4]
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from memory import in_fresh_process, reset_peak_rss, status_MB

from exprefine.neighbors import cell_heights_A
from exprefine.observables import RadialDistribution
from exprefine.reweighting import frame_energies, reweighted_loss_and_gradient
from exprefine.sampling import SamplerSettings, sample
from exprefine.state import from_atoms, replicate
from exprefine.structures import gcn_stack
from exprefine.trajectory import Trajectory

TIMESTEP_FS = 0.5
TEMPERATURE_K = 300.0
WARM_UP_STEPS = 10  # steps run before timing either route (lazy set-up, TorchScript profiling runs)
FRICTION_PER_PS = 10.0
DEEPMD_PARAMS = {
    "type_map": ["C", "N"],
    "descriptor": {"type": "se_e2_a", "sel": [40, 50], "rcut_smth": 0.5, "rcut": 5.0, "neuron": [16, 32, 64],
                   "axis_neuron": 8, "seed": 1},
    "fitting_net": {"neuron": [64, 64, 64], "resnet_dt": True, "seed": 2},
}


@dataclass
class Models:
    """Files of the two small models, written once per run."""

    mace_file: Path
    deepmd_checkpoint: Path
    deepmd_frozen: Path


def write_models(folder: Path) -> Models:
    """Build the small MACE and DeePMD models with random (scaled-down) weights and save them natively."""
    from exprefine.potentials.deepmd import import_deepmd
    from exprefine.potentials.mace import build_mace

    mace = build_mace(["C", "N"], r_max_A=5.0, channels=32, max_L=0, n_interactions=2,
                      atomic_energies_eV={"C": -150.0, "N": -270.0}, avg_num_neighbors=40.0,
                      interaction_scale_eV=0.01, dtype=torch.float32, seed=0)
    mace_file = folder / "small_mace.model"
    torch.save(mace, mace_file)

    import_deepmd()
    from deepmd.pt.entrypoints.main import freeze
    from deepmd.pt.model.model import get_model
    from deepmd.pt.train.wrapper import ModelWrapper

    model = get_model(copy.deepcopy(DEEPMD_PARAMS))
    with torch.no_grad():
        sea = model.atomic_model.descriptor.sea
        sea.mean.zero_()
        sea.mean[:, :, 0] = 0.1
        sea.stddev.fill_(0.2)
        last = [p for n, p in model.named_parameters() if "fitting_net" in n and "matrix" in n][-1]
        last.mul_(0.01)  # small forces: random dynamics stay near the lattice
    wrapper = ModelWrapper(model, model_params=copy.deepcopy(DEEPMD_PARAMS))
    wrapper.train_infos = {"lr": 1e-3, "step": 0}
    ckpt = folder / "small_deepmd.pt"
    torch.save({"model": wrapper.state_dict()}, ckpt)
    frozen = folder / "small_deepmd.pth"
    freeze(model=str(ckpt), output=str(frozen))
    return Models(mace_file, ckpt, frozen)


def exprefine_potential(kind: str, models: Models):
    if kind == "mace":
        from exprefine.potentials.mace import MacePotential

        return MacePotential.from_file(models.mace_file, dtype=torch.float32)
    from exprefine.potentials.deepmd import DeepmdPotential

    return DeepmdPotential.from_checkpoint(models.deepmd_checkpoint, dtype=None)


def ase_calculator(kind: str, models: Models):
    if kind == "mace":
        from mace.calculators import MACECalculator

        return MACECalculator(model_paths=str(models.mace_file), device="cpu", default_dtype="float32")
    from deepmd.calculator import DP

    return DP(model=str(models.deepmd_frozen))


def bare_call(kind: str, potential, state):
    """A function that runs the model's own energy+force evaluation once (inputs prepared outside)."""
    if kind == "mace":
        batch = potential.input_dict(state)
        return lambda: potential.model(batch, training=False, compute_force=True)["forces"]
    n = state.n_atoms
    coord = state.positions.reshape(1, n * 3).to(potential._coord_dtype)
    atype = potential.types_of(state).reshape(1, n)
    box = state.cell.reshape(1, 9).to(potential._coord_dtype)
    return lambda: potential.model(coord, atype, box=box)["force"]


def seconds_per_call(fn, repeats: int) -> float:
    for _ in range(2):
        fn()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def ase_steps_per_s(kind: str, models: Models, atoms, n_steps: int) -> float:
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    atoms = atoms.copy()
    atoms.calc = ase_calculator(kind, models)
    MaxwellBoltzmannDistribution(atoms, temperature_K=TEMPERATURE_K, rng=np.random.default_rng(0))
    dyn = Langevin(atoms, TIMESTEP_FS * units.fs, temperature_K=TEMPERATURE_K,
                   friction=FRICTION_PER_PS / (1000.0 * units.fs), rng=np.random.default_rng(1))
    dyn.run(WARM_UP_STEPS)
    t = time.perf_counter()
    dyn.run(n_steps)
    return n_steps / (time.perf_counter() - t)


def _total_rdf(traj: Trajectory) -> RadialDistribution:
    smallest = float(np.min(cell_heights_A(traj.cells_A[0].double().numpy())))
    r_max = 0.1 * int(4.9 * smallest)  # just below half the smallest height, on a 0.1 Å grid
    return RadialDistribution(r_max_A=min(8.0, r_max), r_min_A=0.8, bin_width_A=0.05)


def _gradient_pass(kind: str, models: Models, path: str, chunk: int, threads: int, queue) -> None:
    """Child process: one loss+gradient pass over all trainable parameters; (seconds, peak RSS growth MB)."""
    torch.set_num_threads(threads)
    data = torch.load(path, weights_only=False)
    traj, static, ref = data["trajectory"], data["static"], data["reference"]
    potential = exprefine_potential(kind, models)
    rdf = _total_rdf(traj)
    frame_energies(potential, traj, chunk_size=chunk)  # warm-up (lazy initialisation outside the peak)
    reset_peak_rss()
    before = status_MB("VmRSS")
    t = time.perf_counter()
    reweighted_loss_and_gradient(potential, traj, [rdf], [static], lambda p: ((p[0] - ref) ** 2).mean(),
                                 chunk_size=chunk)
    queue.put((time.perf_counter() - t, status_MB("VmHWM") - before))


def bench(kind: str, models: Models, cells: int, n_steps: int, threads: int, replicas: int) -> None:
    atoms = gcn_stack(2, "AB", 3.3, supercell=(cells, cells))
    potential = exprefine_potential(kind, models)
    dtype = torch.float32 if kind == "mace" else torch.float64
    state = from_atoms(atoms, dtype=dtype)
    t_bare = seconds_per_call(bare_call(kind, potential, state), repeats=5)
    settings = SamplerSettings(temperature_K=TEMPERATURE_K, timestep_fs=TIMESTEP_FS, friction_per_ps=FRICTION_PER_PS,
                               n_equilibration_steps=0, n_production_steps=n_steps, stride_steps=max(1, n_steps // 20),
                               seed=0, max_temperature_factor=50.0)
    warm = replace(settings, n_production_steps=WARM_UP_STEPS, stride_steps=WARM_UP_STEPS)
    sample(potential, state, warm, progress=False)  # warm-up
    res = sample(potential, state, settings, progress=False)
    ours = n_steps / res.wall_time_s
    theirs = ase_steps_per_s(kind, models, atoms, n_steps)
    print(f"{kind:6s} N = {len(atoms):5d}: bare energy+forces {t_bare * 1e3:8.1f} ms | exprefine MD {ours:7.2f} steps/s "
          f"({1.0 / (ours * t_bare):4.2f}× the bare call per step) | ASE Langevin {theirs:7.2f} steps/s | "
          f"exprefine/ASE {ours / theirs:4.2f}×")
    if replicas > 1:
        batched = sample(potential, replicate(state, replicas), settings, progress=False)
        per_system = replicas * n_steps / batched.wall_time_s
        print(f"       {replicas} replicas in one batch: {per_system:7.2f} system-steps/s "
              f"= {per_system / theirs:4.2f}× ASE's one system")

    traj = res.trajectory
    chunk = 4
    t = time.perf_counter()
    frame_energies(potential, traj, chunk_size=chunk)
    t_e = time.perf_counter() - t
    rdf = _total_rdf(traj)
    static = rdf.evaluate(traj).double()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "traj.pt")
        torch.save({"trajectory": traj, "static": static, "reference": static.mean(0) * 1.02}, path)
        t_g, growth = in_fresh_process(_gradient_pass, kind, models, path, chunk, threads)
    n_params = sum(p.numel() for p in potential.parameters() if p.requires_grad)
    print(f"       reweighting {traj.n_frames} frames, {n_params} trainable parameters: energies "
          f"{traj.n_frames / t_e:7.2f} frames/s, loss+gradient {traj.n_frames / t_g:7.2f} frames/s (chunk {chunk}), "
          f"peak RSS growth {growth:7.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mace", "deepmd"], choices=["mace", "deepmd"])
    parser.add_argument("--cells", type=int, nargs="+", default=[2, 6],
                        help="in-plane supercell of the AB bilayer (28 atoms per cell): 2 → 112 atoms, 6 → 1,008")
    parser.add_argument("--steps", type=int, default=100, help="MD steps per route (20 frames are stored)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--replicas", type=int, default=4,
                        help="also run this many replicas of the cell in one batch (system-steps/s); 1: skip")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), load average {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} cores; BAOAB/Langevin {TIMESTEP_FS} fs at {TEMPERATURE_K} K")
    with tempfile.TemporaryDirectory() as tmp:
        models = write_models(Path(tmp))
        for kind in args.models:
            for cells in args.cells:
                bench(kind, models, cells, args.steps, args.threads, args.replicas)


if __name__ == "__main__":
    main()
