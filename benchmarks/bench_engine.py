"""Speed and memory of the DiffTRe engine on Lennard-Jones argon (prints figures, asserts nothing).

Measures, for N atoms of liquid-density argon (cutoff 10 Å):
  * MD steps/s with BAOAB (Verlet-skin pair list) and, for comparison, with the list rebuilt every step;
  * the bare energy+forces time per call and the share of an MD step spent outside the potential;
  * reweighting throughput: frames/s of the energy pass and of the chunked backward pass,
    and the peak resident memory growth of the loss+gradient pass for a small chunk and for
    all frames in one chunk (each in a fresh process, VmHWM reset after loading the frames);
  * the Gauss–Newton linearisation (per-frame ∂U/∂θ and the Jacobian), frames/s.
The machine load is printed too: on a shared 2-core machine other processes slow torch a lot,
so compare ratios measured in one run.

Run:  python benchmarks/bench_engine.py [--cells 5 10] [--steps 200] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from ase.build import bulk
from memory import in_fresh_process, reset_peak_rss, status_MB

from exprefine.observables import RadialDistribution
from exprefine.potentials import LennardJones
from exprefine.refine import Target, linearize
from exprefine.reweighting import frame_energies, reweighted_loss_and_gradient
from exprefine.sampling import SamplerSettings, sample
from exprefine.state import from_atoms
from exprefine.trajectory import Trajectory
from exprefine.units import kelvin_to_eV


def argon(n_cells: int):
    a = (4 / 0.02125) ** (1 / 3)
    return from_atoms(bulk("Ar", "fcc", a=a, cubic=True).repeat((n_cells,) * 3))


def _lj() -> LennardJones:
    return LennardJones(["Ar"], 3.405, kelvin_to_eV(119.8), cutoff_A=10.0)


def _rdf(traj: Trajectory) -> RadialDistribution:
    return RadialDistribution(r_max_A=min(12.0, round(0.49 * float(traj.cells_A[0, 0, 0]), 1)), r_min_A=2.0,
                              bin_width_A=0.05, species=("Ar", "Ar"))


def _gradient_pass(path: str, chunk: int, threads: int, queue) -> None:
    """Child process: one loss+gradient pass; reports (seconds, peak RSS growth in MB).

    The trajectory and the per-frame g(r) are loaded from disk, so nothing but the
    gradient pass allocates after the peak is reset.
    """
    torch.set_num_threads(threads)
    data = torch.load(path, weights_only=False)
    traj, static, ref = data["trajectory"], data["static"], data["reference"]
    lj = _lj()
    rdf = _rdf(traj)
    reset_peak_rss()
    before = status_MB("VmRSS")
    t = time.perf_counter()
    reweighted_loss_and_gradient(lj, traj, [rdf], [static], lambda p: ((p[0] - ref) ** 2).mean(), chunk_size=chunk)
    queue.put((time.perf_counter() - t, status_MB("VmHWM") - before))


def bench(n_cells: int, n_steps: int, threads: int) -> None:
    state = argon(n_cells)
    lj = _lj()
    for _ in range(3):
        lj.compute(state)
    t = time.perf_counter()
    for _ in range(10):
        lj.compute(state)
    t_force = (time.perf_counter() - t) / 10
    settings = SamplerSettings(temperature_K=85.0, timestep_fs=10.0, n_equilibration_steps=0,
                               n_production_steps=n_steps, stride_steps=10, seed=0)
    res = sample(lj, state, settings, progress=False)
    steps_skin = n_steps / res.wall_time_s
    lj.pair_cache.skin_A = 0.0
    res0 = sample(lj, state, settings, progress=False)
    steps_noskin = n_steps / res0.wall_time_s
    lj.pair_cache.skin_A = 1.0
    traj = res.trajectory
    outside = 1.0 - t_force * steps_skin
    print(f"N = {state.n_atoms:5d}: energy+forces {t_force * 1e3:7.1f} ms | MD {steps_skin:6.1f} steps/s "
          f"(skin 1 Å) vs {steps_noskin:6.1f} steps/s (list every step) | "
          f"outside the potential: {100 * outside:5.1f} % of a step (negative: the cached list beats a bare call)")

    t = time.perf_counter()
    frame_energies(lj, traj, chunk_size=16)
    t_e = time.perf_counter() - t
    rdf = _rdf(traj)
    static = rdf.evaluate(traj).double()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "traj.pt")
        torch.save({"trajectory": traj, "static": static, "reference": static.mean(0) * 1.02}, path)
        for chunk in (4, traj.n_frames):
            t_g, growth = in_fresh_process(_gradient_pass, path, chunk, threads)
            print(f"          reweighting {traj.n_frames} frames: energies {traj.n_frames / t_e:7.1f} frames/s, "
                  f"loss+gradient {traj.n_frames / t_g:7.1f} frames/s (chunk {chunk:3d}), "
                  f"peak RSS growth {growth:7.1f} MB")
    target = Target("g", rdf, static.mean(0) * 1.02)
    t = time.perf_counter()
    linearize(lj, traj, [target], [static], chunk_size=16)
    print(f"          Gauss–Newton linearisation: {traj.n_frames / (time.perf_counter() - t):7.1f} frames/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, nargs="+", default=[5, 10],
                        help="fcc cells per edge (4 atoms each): 5 → 500 atoms, 10 → 4,000")
    parser.add_argument("--steps", type=int, default=400, help="MD steps (a frame every 10: steps/10 frames)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), load average {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} cores")
    for n in args.cells:
        bench(n, args.steps, args.threads)


if __name__ == "__main__":
    main()
