"""Off-target check of the silicon refinement: what did fitting C_ij and a do to the crystal's g(r)?

The refinement against the measured elastic constants and lattice constant (``experiment.yaml``)
never saw the structure. This compares g(r) of the NVT state point (the measured cell, 300 K)
before (the first trajectory, Stillinger–Weber) and after (the refiner's final check run): the
first-shell peak position, height and width, and the RMS change of g(r) over 2–5.4 Å. A stiffer
bond narrows and heightens the first peak; its position is fixed by the cell.

    python examples/silicon/structure_check.py            # needs runs/experiment (exprefine refine experiment.yaml)
    python examples/silicon/structure_check.py --smoke    # seconds: two 0.2-ps runs of SW instead (a test runs it)
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUN = HERE / "runs" / "experiment" / "nvt_300K" / "trajectories"


@dataclass
class FirstPeak:
    """The first coordination shell of g(r)."""

    position_A: float
    height: float
    fwhm_A: float
    n_frames: int


def first_peak(r, g, n_frames: int) -> FirstPeak:
    """Position and height of the maximum below 3 Å, and its full width at half maximum (linear interpolation)."""
    import numpy as np

    r, g = np.asarray(r), np.asarray(g)
    inside = r < 3.0
    k = int(np.argmax(np.where(inside, g, -np.inf)))
    half = 0.5 * g[k]
    lo = k
    while lo > 0 and g[lo] > half:
        lo -= 1
    hi = k
    while hi < len(g) - 1 and g[hi] > half:
        hi += 1
    left = r[lo] + (half - g[lo]) * (r[lo + 1] - r[lo]) / (g[lo + 1] - g[lo])
    right = r[hi - 1] + (half - g[hi - 1]) * (r[hi] - r[hi - 1]) / (g[hi] - g[hi - 1])
    return FirstPeak(float(r[k]), float(g[k]), float(right - left), n_frames)


def smoke_trajectory(epsilon_scale: float):
    """20 frames of a 0.2-ps NVT run of Stillinger–Weber silicon (ε scaled) in the 64-atom measured cell."""
    from ase.io import read

    from exprefine.potentials import stillinger_weber_silicon
    from exprefine.sampling import SamplerSettings, sample
    from exprefine.state import from_atoms

    settings = SamplerSettings(temperature_K=300.0, timestep_fs=2.0, friction_per_ps=5.0, n_equilibration_steps=20,
                               n_production_steps=100, stride_steps=5, seed=1)
    state = from_atoms(read(HERE / "diamond_64.extxyz"))
    return sample(stillinger_weber_silicon(epsilon_scale=epsilon_scale), state, settings).trajectory


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, default=RUN / "trajectory_0000.pt")
    parser.add_argument("--after", type=Path, default=RUN / "final_check.pt")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--smoke", action="store_true",
                        help="no refinement needed: 0.2-ps NVT runs of SW and of SW with ε × 0.97 stand for before/after")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from exprefine.observables import RadialDistribution
    from exprefine.trajectory import Trajectory

    torch.set_num_threads(1)
    rdf = RadialDistribution(r_max_A=5.4, r_min_A=2.0, bin_width_A=0.01, species=("Si", "Si"))
    r = rdf.grid().numpy()
    curves, peaks = {}, {}
    for name, path in (("before", args.before), ("after", args.after)):
        trajectory = smoke_trajectory(1.0 if name == "before" else 0.97) if args.smoke else Trajectory.load(path)
        g = rdf.evaluate(trajectory).double().mean(0).numpy()
        curves[name] = g
        peaks[name] = first_peak(r, g, trajectory.n_frames)
    rms = float(np.sqrt(np.mean((curves["after"] - curves["before"]) ** 2)))
    record = {"first_peak": {k: asdict(v) for k, v in peaks.items()}, "rms_change_2_to_5p4_A": rms,
              "before": str(args.before.name), "after": str(args.after.name)}
    for name, p in peaks.items():
        print(f"{name}: first peak at {p.position_A:.3f} Å, height {p.height:.2f}, FWHM {p.fwhm_A:.3f} Å "
              f"({p.n_frames} frames)")
    print(f"RMS change of g(r), 2–5.4 Å: {rms:.3f}")
    if not args.smoke:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "structure_check.json").write_text(json.dumps(record, indent=1) + "\n")
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(r, curves["before"], label="Stillinger–Weber (start)")
        ax.plot(r, curves["after"], label="refined to C_ij and a")
        ax.set_xlabel("r (Å)")
        ax.set_ylabel("g(r)")
        ax.set_title("crystalline Si, 300 K, measured cell (NVT)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.out / "structure_check.png", dpi=120)
    return record


if __name__ == "__main__":
    main()
