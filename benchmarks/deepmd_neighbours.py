"""DeePMD energy + forces + stress with exprefine's vesin neighbour lists vs deepmd's own builder.

    python benchmarks/deepmd_neighbours.py                      # g-C3N4 base model, 2x2 / 4x4 / 8x4 bilayers
    python benchmarks/deepmd_neighbours.py --sizes 2x2 --repeats 2   # quick
    python benchmarks/deepmd_neighbours.py --smoke                   # seconds: the 1x1 bilayer once (for tests)

``DeepmdPotential`` builds periodic images and neighbour lists with vesin
(``exprefine.potentials.deepmd.extended_inputs``); deepmd's ``extend_input_and_build_neighbor_list``
computes all n_local × n_extended distances. Both feed the same ``format_nlist`` and atomic model.
Prints, per cell: the median time of one ``compute`` (energy, forces, stress) with each builder, the
share of it spent building the lists, and the largest differences of energy, force and stress.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from types import MethodType

REPO = Path(__file__).resolve().parents[1]


def deepmd_builder_energies(potential, coord, atype, box):
    """``DeepmdPotential.frame_energies`` with deepmd's own neighbour builder (the version before vesin)."""
    from deepmd.pt.utils.nlist import extend_input_and_build_neighbor_list

    nf, _ = atype.shape
    coord = coord.to(potential._coord_dtype)
    box = None if box is None else box.to(potential._coord_dtype)
    model = potential.model
    ext_coord, ext_atype, mapping, nlist = extend_input_and_build_neighbor_list(
        coord, atype, model.get_rcut(), model.get_sel(), mixed_types=True, box=box)
    ext_coord = ext_coord.view(nf, -1, 3)
    nlist = model.format_nlist(ext_coord, ext_atype, nlist)
    atomic = model.atomic_model.forward_common_atomic(ext_coord, ext_atype, nlist, mapping=mapping)
    return atomic["energy"].reshape(nf, -1).sum(dim=1)


@dataclass
class Row:
    """One cell: times (s) of one energy+forces+stress call with each builder, and the largest differences."""

    size: str
    n_atoms: int
    deepmd_builder_s: float
    vesin_s: float
    vesin_lists_s: float
    max_energy_difference_eV: float
    max_force_difference_eV_per_A: float
    max_stress_difference_eV_per_A3: float


def timed(fn, repeats: int) -> tuple[float, object]:
    out, times = None, []
    for _ in range(repeats + 1):  # the first call warms up
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:]), out


def bilayer_state(size: str):
    """The AB g-C3N4 bilayer of in-plane supercell ``size`` ("4x4") at d = 3.2 Å, rattled by 0.05 Å (float64 State)."""
    import torch

    from exprefine.state import from_atoms
    from exprefine.structures import gcn_stack

    n1, n2 = (int(x) for x in size.split("x"))
    atoms = gcn_stack(2, "AB", 3.2, supercell=(n1, n2))
    atoms.rattle(0.05, seed=1)
    return from_atoms(atoms, dtype=torch.float64)


def main(argv: list[str] | None = None) -> list[Row]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=REPO / "examples" / "gcn" / "models" / "base_deepmd.pt")
    p.add_argument("--sizes", nargs="+", default=["2x2", "4x4", "8x4"], help="in-plane supercells of the AB bilayer")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--smoke", action="store_true", help="the 28-atom 1x1 bilayer, one timed call each")
    args = p.parse_args(argv)
    if args.smoke:
        args.sizes, args.repeats = ["1x1"], 1
    import torch

    torch.set_num_threads(args.threads)
    from exprefine.potentials import load_model_file
    from exprefine.potentials.deepmd import DeepmdPotential, extended_inputs

    potential = load_model_file(args.model)
    assert isinstance(potential, DeepmdPotential)
    print(f"{args.model.name}, rcut {potential.model.get_rcut()} Å, sel {potential.model.get_sel()}, "
          f"{args.threads} thread(s), load average {os.getloadavg()[0]:.1f}")
    print("| cell | atoms | deepmd's builder | vesin | speed-up | vesin lists alone | max |ΔE| (eV) | max |ΔF| (eV/Å) "
          "| max |Δσ| (eV/Å³) |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for size in args.sizes:
        state = bilayer_state(size)

        def compute():
            return potential.compute(state, forces=True, stress=True)

        # on this instance only: the class keeps the vesin builder
        potential.frame_energies = MethodType(deepmd_builder_energies, potential)
        t_old, old = timed(compute, args.repeats)
        del potential.frame_energies
        t_new, new = timed(compute, args.repeats)
        types = potential.types_of(state)[None]
        t_lists, _ = timed(lambda: extended_inputs(state.positions[None], types, state.cell,
                                                   float(potential.model.get_rcut())), args.repeats)
        d_e = float((old.energy_eV - new.energy_eV).abs().max())
        d_f = float((old.forces_eV_per_A - new.forces_eV_per_A).abs().max())
        d_s = float((old.stress_eV_per_A3 - new.stress_eV_per_A3).abs().max())
        print(f"| {size} | {state.n_atoms} | {1000 * t_old:.0f} ms | {1000 * t_new:.0f} ms | {t_old / t_new:.2f}× "
              f"| {1000 * t_lists:.1f} ms | {d_e:.1e} | {d_f:.1e} | {d_s:.1e} |", flush=True)
        rows.append(Row(size, state.n_atoms, t_old, t_new, t_lists, d_e, d_f, d_s))
    return rows


if __name__ == "__main__":
    main()
