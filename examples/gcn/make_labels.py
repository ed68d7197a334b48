"""Label g-C3N4 frames with GFN1-xTB ("label": no dispersion, or "truth": full) into an extxyz cache.

Resumable: every finished frame is appended to the cache at once; run the same command
again after a kill and only the missing frames are computed (frames are matched by a
hash of their geometry, so the frame list must be generated the same way — it is seeded).

    OMP_NUM_THREADS=1 python examples/gcn/make_labels.py --method label \
        --cache examples/gcn/labels_label.extxyz --n-frames 2

    # or label frames you already have
    python examples/gcn/make_labels.py --method truth --frames my_frames.extxyz --cache truth.extxyz
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from ase import Atoms

from exprefine.reference import label_frames
from exprefine.structures import carbon_defects, gcn_stack


def build_frames(
    n_frames: int,
    supercell: tuple[int, int] = (1, 1),
    spacing_range_A: tuple[float, float] = (2.9, 4.0),
    rattle_A: float = 0.05,
    seed: int = 0,
) -> list[Atoms]:
    """Deterministic AB-stacked bulk frames: spacing d swept, every other frame corrugated,
    every fourth with a pair of C-on-central-N defects, all rattled by ``rattle_A`` Å."""
    rng = np.random.default_rng(seed)
    spacings_A = np.linspace(*spacing_range_A, max(n_frames, 2))
    frames = []
    for i in range(n_frames):
        amplitude_A = 0.2 if i % 2 else 0.0
        atoms = gcn_stack(
            2, "AB", float(spacings_A[i]), supercell=supercell, corrugation_amplitude_A=amplitude_A
        )
        if i % 4 == 3:
            atoms = carbon_defects(atoms, "central_N", n_defects=2, seed=seed + i)
        atoms.positions += rng.normal(scale=rattle_A, size=atoms.positions.shape)
        atoms.info["frame_index"] = i
        frames.append(atoms)
    return frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=["label", "truth"], required=True)
    parser.add_argument("--cache", required=True, help="extxyz cache file (created or resumed)")
    parser.add_argument("--frames", help="extxyz file of frames to label instead of generated ones")
    parser.add_argument("--n-frames", type=int, default=2)
    parser.add_argument("--supercell", type=int, nargs=2, default=(1, 1), metavar=("N1", "N2"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--electronic-temperature-K", type=float, default=300.0)
    args = parser.parse_args(argv)

    if args.frames:
        from ase.io import read

        frames = list(read(args.frames, index=":"))
    else:
        frames = build_frames(args.n_frames, tuple(args.supercell), seed=args.seed)

    def report(i: int, n: int, atoms: Atoms) -> None:
        print(
            f"[{i + 1}/{n}] {atoms.get_chemical_formula()} E = {atoms.get_potential_energy():.4f} eV"
            f" ({atoms.info['label_wall_s']:.2f} s)",
            flush=True,
        )

    run = label_frames(
        frames,
        args.method,
        args.cache,
        electronic_temperature_K=args.electronic_temperature_K,
        progress=report,
    )
    print(
        f"{run.n_computed} computed ({run.wall_s:.1f} s), {run.n_cached} from cache -> {args.cache}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
