"""Write the g-C3N4 starting cells of the refinement and transferability runs to ``cells/``.

Bulk AB bilayers (two heptazine layers per cell, c = 2d), pristine, at d = 3.40 Å (between the
label method's 3.63 Å and the measured 3.22–3.25 Å):

    ab_1x1.extxyz      28 atoms   (7.03 Å in-plane: the refinement demo cell)
    ab_2x2.extxyz     112 atoms   (the training-set cell size)
    ab_4x4.extxyz     448 atoms
    ab_6x6.extxyz   1,008 atoms

    python examples/gcn/make_cells.py            # the four above (deterministic; seconds)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ase.io import write

from exprefine.structures import gcn_stack

HERE = Path(__file__).resolve().parent
SPACING_A = 3.40


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=HERE / "cells")
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 6], help="in-plane repetitions n (n×n)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for n in args.sizes:
        atoms = gcn_stack(2, "AB", SPACING_A, supercell=(n, n))
        path = args.out / f"ab_{n}x{n}.extxyz"
        write(path, atoms, format="extxyz")
        print(f"{path}: {len(atoms)} atoms, {atoms.get_chemical_formula()}, cell lengths "
              f"{', '.join(f'{x:.3f}' for x in atoms.cell.lengths())} Å")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
