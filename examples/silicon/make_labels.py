"""GFN1-xTB labels of crystalline silicon at 300 K: the DFT-level reference of the silicon example.

Frames: evenly spaced MD frames of the 64-atom measured cell at 300 K — half from the
Stillinger–Weber start of ``experiment.yaml`` (its first NVT trajectory), half from the refined
model (its final check run) — labelled with GFN1-xTB (tblite, the project's cheap stand-in for
DFT; energies, forces, stress). Each labelled frame is appended to the cache at once, so a killed
run resumes where it stopped.

    python examples/silicon/make_labels.py            # 80 frames, ≈ 7 s each on one core → data/gfn1_labels.extxyz
    python examples/silicon/make_labels.py --smoke    # 2 frames of the 8-atom cell (seconds)
"""

from __future__ import annotations

import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRAJECTORIES = HERE / "runs" / "experiment" / "nvt_300K" / "trajectories"


def frames(n_per_run: int, smoke: bool):
    """ASE frames to label, each with ``frame_id`` (source and index) in ``info``."""
    import numpy as np
    from ase.build import bulk

    from exprefine.trajectory import Trajectory

    if smoke:
        out = []
        for k in range(2):
            atoms = bulk("Si", "diamond", a=5.4313, cubic=True)
            atoms.rattle(0.05, seed=k)
            atoms.info["frame_id"] = f"smoke_{k}"
            out.append(atoms)
        return out
    out = []
    for source, name in (("sw_start", "trajectory_0000.pt"), ("refined", "final_check.pt")):
        trajectory = Trajectory.load(TRAJECTORIES / name)
        picks = np.linspace(0, trajectory.n_frames - 1, n_per_run).round().astype(int)
        for i, atoms in zip(picks, trajectory.select(picks.tolist()).to_atoms()):
            atoms.info["frame_id"] = f"{source}_{int(i):05d}"
            out.append(atoms)
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames-per-run", type=int, default=40)
    parser.add_argument("--out", type=Path, default=HERE / "data" / "gfn1_labels.extxyz")
    parser.add_argument("--smoke", action="store_true", help="2 rattled 8-atom cells")
    args = parser.parse_args(argv)

    from tqdm import tqdm

    from exprefine.reference import label_frames

    todo = frames(args.frames_per_run, args.smoke)
    bar = tqdm(total=len(todo), desc="GFN1-xTB", unit="frame", disable=args.smoke)
    run = label_frames(todo, "truth", args.out, progress=lambda i, n, atoms: bar.update(1))
    bar.close()
    print(f"{len(run.frames)} frames in {args.out} ({run.n_computed} computed in {run.wall_s:.0f} s, "
          f"{run.n_cached} from the cache)")
    return args.out


if __name__ == "__main__":
    main()
