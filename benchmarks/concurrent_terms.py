"""An MLIP plus D3(BJ): the terms' forces and stress in sequence vs side by side (``SumPotential(concurrent=True)``).

    python benchmarks/concurrent_terms.py                       # base DeePMD + GFN1's D3, 2x2 / 4x4 / 8x4 bilayers
    python benchmarks/concurrent_terms.py --sizes 4x4 --repeats 3
    python benchmarks/concurrent_terms.py --d3-parameters examples/gcn/runs/strategies/h3_long_polish/refined_d3bj.json
    python benchmarks/concurrent_terms.py --smoke               # seconds: the 1x1 bilayer once (for tests)

The ``dftd3`` library is single-threaded, so in sequence a second core only helps the MLIP.
Side by side, each term runs in its own Python thread (the library and TorchScript release the
GIL while they work) with one torch thread. Prints, per cell: the median time of one energy +
forces + stress call of each term alone (one torch thread), of the sum in sequence at one and at
``--threads`` torch threads, and side by side at one, with the largest differences from the
sequential result.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from deepmd_neighbours import bilayer_state, timed  # timed: median of repeats after a warm-up call

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Row:
    """One cell: times (s) of one energy + forces + stress call, and the largest differences side by side."""

    size: str
    n_atoms: int
    mlip_alone_s: float
    d3_alone_s: float
    sequential_1_thread_s: float
    sequential_n_threads_s: float
    concurrent_s: float
    max_energy_difference_eV: float
    max_force_difference_eV_per_A: float
    max_stress_difference_eV_per_A3: float


def main(argv: list[str] | None = None) -> list[Row]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=REPO / "examples" / "gcn" / "models" / "base_deepmd.pt")
    p.add_argument("--sizes", nargs="+", default=["2x2", "4x4", "8x4"], help="in-plane supercells of the AB bilayer")
    p.add_argument("--d3-parameters", type=Path, default=None,
                   help="a refined_d3bj.json written by a refinement (default: GFN1-xTB's D3, the synthetic data's)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="torch threads of the sequential comparison")
    p.add_argument("--smoke", action="store_true", help="the 28-atom 1x1 bilayer, one timed call each")
    args = p.parse_args(argv)
    if args.smoke:
        args.sizes, args.repeats = ["1x1"], 1
    import torch

    from exprefine.potentials import SumPotential, load_model_file
    from exprefine.potentials.dftd3 import D3Dispersion, load_d3_parameters
    from exprefine.reference.tblite_methods import gfn1_d3

    d3_parameters = gfn1_d3() if args.d3_parameters is None else load_d3_parameters(args.d3_parameters)
    mlip, d3 = load_model_file(args.model), D3Dispersion(d3_parameters)
    sequential, concurrent = SumPotential([mlip, d3]), SumPotential([mlip, d3], concurrent=True)
    d3_name = "GFN1's D3(BJ)" if args.d3_parameters is None else f"D3(BJ) of {args.d3_parameters}"
    print(f"{args.model.name} + {d3_name} (pair cutoff {d3.cutoff_A:.1f} Å), {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"| cell | atoms | MLIP alone | D3 alone | in sequence, 1 thread | in sequence, {args.threads} threads "
          "| side by side, 1 thread each | speed-up vs best sequence | max |ΔE| (eV) | max |ΔF| (eV/Å) | max |Δσ| (eV/Å³) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for size in args.sizes:
        state = bilayer_state(size)

        def call(potential):
            return lambda: potential.compute(state, forces=True, stress=True)

        torch.set_num_threads(args.threads)
        t_seq_n, reference = timed(call(sequential), args.repeats)
        torch.set_num_threads(1)
        t_mlip, _ = timed(call(mlip), args.repeats)
        t_d3, _ = timed(call(d3), args.repeats)
        t_seq_1, _ = timed(call(sequential), args.repeats)
        t_conc, out = timed(call(concurrent), args.repeats)
        d_e = float((out.energy_eV - reference.energy_eV).abs().max())
        d_f = float((out.forces_eV_per_A - reference.forces_eV_per_A).abs().max())
        d_s = float((out.stress_eV_per_A3 - reference.stress_eV_per_A3).abs().max())
        print(f"| {size} | {state.n_atoms} | {1000 * t_mlip:.0f} ms | {1000 * t_d3:.0f} ms | {1000 * t_seq_1:.0f} ms "
              f"| {1000 * t_seq_n:.0f} ms | {1000 * t_conc:.0f} ms | {min(t_seq_1, t_seq_n) / t_conc:.2f}× "
              f"| {d_e:.1e} | {d_f:.1e} | {d_s:.1e} |", flush=True)
        rows.append(Row(size, state.n_atoms, t_mlip, t_d3, t_seq_1, t_seq_n, t_conc, d_e, d_f, d_s))
    return rows


if __name__ == "__main__":
    main()
