"""Print the fixed C6, C8 and BJ radii of strategy C2 (``strategy_c2_dispersion_prior.yaml``).

D3(BJ)'s coefficients per species pair (CC, CN, NN) at the coordination numbers the atoms have in
the synthetic truth's cell (:func:`exprefine.potentials.dftd3.d3_pair_coefficients`), and the
Becke–Johnson radius a1·√(C8/C6) + a2 with PBE's damping (the functional of the base model's labels):

    python examples/gcn/d3_pair_prior.py            # the pair_dispersion lines of the config
    python examples/gcn/d3_pair_prior.py --smoke    # the same for a one-cell bilayer (a test runs it)
"""

from __future__ import annotations

import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parent
PBE_A1, PBE_A2_BOHR = 0.4289, 4.4407  # D3(BJ) damping of PBE (Grimme, Ehrlich, Goerigk 2011)


def main(argv: list[str] | None = None) -> None:
    from ase.io import read

    from exprefine.potentials.dftd3 import d3_pair_coefficients
    from exprefine.structures import gcn_stack

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structure", type=Path, default=HERE / "data" / "layers6" / "synthetic_truth_cell.extxyz")
    parser.add_argument("--smoke", action="store_true", help="a one-cell bilayer instead of the truth's cell")
    args = parser.parse_args(argv)
    atoms = gcn_stack(2, "AB", 3.3, supercell=(1, 1)) if args.smoke else read(args.structure)
    c = d3_pair_coefficients(atoms.numbers, atoms.positions, ["C", "N"], PBE_A1, PBE_A2_BOHR)
    print(f"# {len(atoms)} atoms; C6 spread over atom pairs (SD, eV·Å⁶): "
          + ", ".join(f"{x:.2f}" for x in c.c6_sd_eV_A6))
    print("      c6_eV_A6: [" + ", ".join(f"{x:.4f}" for x in c.c6_eV_A6) + "]       # CC, CN, NN")
    print("      c8_eV_A8: [" + ", ".join(f"{x:.4f}" for x in c.c8_eV_A8) + "]")
    print("      damping_radius_A: [" + ", ".join(f"{x:.4f}" for x in c.damping_radius_A) + "]  # BJ with PBE's a1, a2")


if __name__ == "__main__":
    main()
