"""Rigid-layer interlayer binding curve of AB g-C3N4: the label method, the truth, and MLIPs.

For d on a grid, the ideal 2×2 AB bilayer (112 atoms, c = 2d) is evaluated with the "label"
method (GFN1-xTB without dispersion), the "truth" (full GFN1-xTB) and any number of models
(DeePMD checkpoints or frozen models, MACE ``.model`` files). The binding energy per atom is
E(d) − E(d_far) with d_far the largest d of the grid; the minimum (a parabola through the three
lowest points) gives the rigid-layer spacing. The reference methods are cached in
``binding_curve_reference.csv`` beside the output (they do not change between models).

    export OMP_NUM_THREADS=1
    python examples/gcn/binding_curve.py --models models/base_deepmd.pt   # ≈ 2 min for the references once
    # → binding_curve.csv, binding_curve.png, binding_curve.json in examples/gcn/results/

A model whose energy error is larger than the 2 meV/atom of the label method's binding cannot be
expected to reproduce it: the curve shows what the model has learned about the layers.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from common import MEASURED_SPACING_A, MEASURED_SPACING_LABEL

HERE = Path(__file__).resolve().parent
DEFAULT_SPACINGS_A = (2.9, 3.0, 3.1, 3.2, 3.3, 3.4, 3.5, 3.6, 3.7, 3.8, 4.0, 4.3, 4.7, 5.5, 7.0)


def bilayer(d_A: float, supercell: tuple[int, int] = (2, 2)):
    from exprefine.structures import gcn_stack

    return gcn_stack(2, "AB", d_A, supercell=supercell)


def reference_energies(spacings: list[float], cache: Path,
                       supercell: tuple[int, int] = (2, 2)) -> dict[str, dict[float, float]]:
    """E per atom (eV) of "label" and "truth" at each spacing; computed once, cached in ``cache``."""
    from exprefine.reference import make_calculator

    table: dict[str, dict[float, float]] = {"label": {}, "truth": {}}
    if cache.exists():
        for row in csv.DictReader(cache.open()):
            table[row["method"]][round(float(row["d_A"]), 4)] = float(row["energy_eV_per_atom"])
    new = []
    for method in ("label", "truth"):
        calc = make_calculator(method)
        for d in spacings:
            if round(d, 4) in table[method]:
                continue
            atoms = bilayer(d, supercell)
            atoms.calc = calc
            table[method][round(d, 4)] = atoms.get_potential_energy() / len(atoms)
            new.append((method, d, table[method][round(d, 4)]))
            print(f"{method} d = {d:.2f} Å: {table[method][round(d, 4)]:.6f} eV/atom", flush=True)
    if new:
        with cache.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["method", "d_A", "energy_eV_per_atom"])
            for method in ("label", "truth"):
                for d, e in sorted(table[method].items()):
                    w.writerow([method, d, f"{e:.8f}"])
    return table


def model_energies(path: Path, spacings: list[float], supercell: tuple[int, int] = (2, 2)) -> dict[float, float]:
    """E per atom (eV) of a DeePMD (``.pt``/``.pth``) or MACE (``.model``) file at each spacing."""
    from exprefine.potentials import load_model_file
    from exprefine.state import from_atoms

    potential = load_model_file(path)
    out = {}
    for d in spacings:
        atoms = bilayer(d, supercell)
        out[round(d, 4)] = float(potential.energy(from_atoms(atoms))[0].detach()) / len(atoms)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, nargs="*", default=[], help="DeePMD .pt/.pth or MACE .model files")
    p.add_argument("--spacings-A", type=float, nargs="+", default=list(DEFAULT_SPACINGS_A))
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--smoke", action="store_true", help="the 28-atom 1×1 bilayer at 4 spacings (seconds; for tests)")
    args = p.parse_args(argv)
    from exprefine.binding_curve import parabolic_minimum

    supercell = (1, 1) if args.smoke else (2, 2)
    if args.smoke:
        args.spacings_A = [3.0, 3.4, 4.0, 7.0]
    args.out.mkdir(parents=True, exist_ok=True)
    spacings = sorted(args.spacings_A)
    curves = reference_energies(spacings, args.out / "binding_curve_reference.csv", supercell)
    for path in args.models:
        curves[path.stem] = model_energies(path, spacings, supercell)

    d = np.array(spacings)
    summary = {}
    rows = []
    for name, table in curves.items():
        e = np.array([table[round(x, 4)] for x in spacings])
        binding = e - e[-1]  # relative to the largest spacing
        d0, e0 = parabolic_minimum(d, binding * 1000)
        summary[name] = {"d_min_A": round(d0, 3), "binding_meV_per_atom": round(-e0, 2),
                         "reference_spacing_A": spacings[-1]}
        rows.append((name, binding))
    with (args.out / "binding_curve.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["d_A"] + [f"{name}_meV_per_atom" for name, _ in rows])
        for i, x in enumerate(spacings):
            w.writerow([x] + [f"{b[i] * 1000:.3f}" for _, b in rows])
    (args.out / "binding_curve.json").write_text(json.dumps(summary, indent=2))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for name, b in rows:
        ax.plot(d, b * 1000, "o-", ms=3, label=f"{name}: min {summary[name]['d_min_A']:.2f} Å, "
                                                 f"{summary[name]['binding_meV_per_atom']:.1f} meV/atom")
    ax.axvspan(*MEASURED_SPACING_A, color="0.85", label=MEASURED_SPACING_LABEL)
    ax.set_xlabel("interlayer spacing d (Å), rigid ideal layers")
    ax.set_ylabel(f"E(d) − E({spacings[-1]:.1f} Å) (meV/atom)")
    ax.set_ylim(min(-60.0, min(float(b.min()) * 1000 for _, b in rows) - 5), 30.0)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "binding_curve.png", dpi=120)
    for name, s in summary.items():
        print(f"{name:20s} minimum at {s['d_min_A']:.3f} Å, binding {s['binding_meV_per_atom']:.2f} meV/atom")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
