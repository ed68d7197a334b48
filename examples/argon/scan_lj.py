"""g(r) RMSE of Lennard-Jones argon at chosen (σ, ε), to look at the loss landscape the refiner walks on.

Each point is one fresh trajectory with the sampling settings of lj.yaml. Example: the straight
line from the textbook parameters to where lj.yaml's refinement stops:
  python examples/argon/scan_lj.py --points 3.405:119.8 3.44:100 3.475:82 3.51:72 3.546:63.3 \\
      --data runs/synthetic/g_r_synthetic.csv
"""

from __future__ import annotations

import argparse

import torch

from exprefine.builders import build_state, build_targets, sampler_settings
from exprefine.config import load_config
from exprefine.potentials import LennardJones
from exprefine.refine import evaluate_targets
from exprefine.sampling import sample
from exprefine.units import kelvin_to_eV


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", nargs="+", required=True, help="sigma_A:epsilon_K pairs")
    parser.add_argument("--data", default="data/g_r.csv", help="g(r) file, relative to examples/argon")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parent / "lj.yaml", [f"targets.0.data.file={args.data}"])
    targets = build_targets(cfg)
    cutoff = cfg.potential.terms[0].cutoff_A
    for point in args.points:
        sigma_A, epsilon_K = (float(v) for v in point.split(":"))
        potential = LennardJones(["Ar"], sigma_A, kelvin_to_eV(epsilon_K), cutoff)
        result = sample(potential, build_state(cfg), sampler_settings(cfg.sampling))
        ev = evaluate_targets(targets, result.trajectory, potential)
        print(f"sigma {sigma_A:.3f} Å  epsilon {epsilon_K:6.1f} K  g(r) RMSE {ev.rmse['g_r']:.4f}", flush=True)


if __name__ == "__main__":
    main()
