"""Speed and memory of the DiffTRe engine on Lennard-Jones argon (prints figures, asserts nothing).

Measures, for N atoms of liquid-density argon (cutoff 10 Å):
  * MD steps/s with BAOAB (Verlet-skin pair list) and, for comparison, with the list rebuilt every step;
  * the bare energy+forces time per call;
  * reweighting throughput: frames/s of the energy pass and of the chunked backward pass,
    and the peak resident memory growth for two chunk sizes.
The machine load is printed too: on a shared 2-core machine other processes slow torch a lot,
so compare ratios measured in one run.

Run:  python benchmarks/bench_engine.py [--atoms 500 2048] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import torch
from ase.build import bulk

from exprefine.observables import RadialDistribution
from exprefine.potentials import LennardJones
from exprefine.reweighting import frame_energies, reweighted_loss_and_gradient
from exprefine.sampling import SamplerSettings, sample
from exprefine.state import from_atoms
from exprefine.units import kelvin_to_eV


def argon(n_cells: int):
    a = (4 / 0.02125) ** (1 / 3)
    return from_atoms(bulk("Ar", "fcc", a=a, cubic=True).repeat((n_cells,) * 3))


def peak_rss_MB() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench(n_cells: int, n_steps: int) -> None:
    state = argon(n_cells)
    lj = LennardJones(["Ar"], 3.405, kelvin_to_eV(119.8), cutoff_A=10.0)
    for _ in range(3):
        lj.compute(state)
    t = time.perf_counter()
    for _ in range(10):
        lj.compute(state)
    t_force = (time.perf_counter() - t) / 10
    settings = SamplerSettings(temperature_K=85.0, timestep_fs=10.0, n_equilibration_steps=0,
                               n_production_steps=n_steps, stride_steps=10, seed=0)
    res = sample(lj, state, settings)
    steps_skin = n_steps / res.wall_time_s
    lj.pair_cache.skin_A = 0.0
    res0 = sample(lj, state, settings)
    steps_noskin = n_steps / res0.wall_time_s
    lj.pair_cache.skin_A = 1.0
    traj = res.trajectory
    print(f"N = {state.n_atoms:5d}: energy+forces {t_force * 1e3:7.1f} ms | MD {steps_skin:6.1f} steps/s "
          f"(skin 1 Å) vs {steps_noskin:6.1f} steps/s (list every step) | "
          f"MD step / bare force call = {1 / steps_skin / t_force:.2f}")

    rdf = RadialDistribution(r_max_A=min(12.0, 0.49 * float(state.cell[0, 0, 0])), r_min_A=2.0, bin_width_A=0.05,
                             species=("Ar", "Ar"))
    static = rdf.evaluate(traj).double()
    ref = static.mean(0) * 1.02
    t = time.perf_counter()
    frame_energies(lj, traj, chunk_size=16)
    t_e = time.perf_counter() - t
    for chunk in (4, traj.n_frames):
        rss0 = peak_rss_MB()
        lj.zero_grad()
        t = time.perf_counter()
        reweighted_loss_and_gradient(lj, traj, [rdf], [static], lambda p: ((p[0] - ref) ** 2).mean(),
                                     chunk_size=chunk)
        t_g = time.perf_counter() - t
        print(f"          reweighting {traj.n_frames} frames: energies {traj.n_frames / t_e:7.1f} frames/s, "
              f"loss+gradient {traj.n_frames / t_g:7.1f} frames/s (chunk {chunk:3d}), "
              f"peak RSS growth {peak_rss_MB() - rss0:6.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, nargs="+", default=[5, 8], help="fcc cells per edge (4 atoms each)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), load average {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} cores")
    for n in args.cells:
        bench(n, args.steps)


if __name__ == "__main__":
    main()
