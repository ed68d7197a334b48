"""Write a structure (extxyz, CIF, POSCAR, ... anything ASE reads) as a LAMMPS data file for the inputs here.

    python examples/lammps/make_data.py examples/gcn/data/synthetic_truth_cell.extxyz gcn.data --species C N

Atom types follow ``--species`` (type 1 = C, type 2 = N: the order of ``pair_coeff * * C N``);
the cell is turned into LAMMPS's orientation (a along x, b in the xy plane).
"""

from __future__ import annotations

import argparse

from ase.io import read

from exprefine.lammps import write_lammps_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("structure", help="a file ASE reads (the last frame is used)")
    parser.add_argument("data", help="the LAMMPS data file to write")
    parser.add_argument("--species", nargs="+", default=["C", "N"], help="element of atom types 1, 2, ...")
    args = parser.parse_args()
    atoms = read(args.structure, index=-1)
    write_lammps_data(atoms, args.data, args.species)
    print(f"{args.data}: {len(atoms)} atoms ({atoms.get_chemical_formula()}), types "
          + " ".join(f"{k + 1}={s}" for k, s in enumerate(args.species)))


if __name__ == "__main__":
    main()
