"""What constant pressure costs on top of NVT MD: stochastic cell rescaling every ``--interval`` steps.

    python benchmarks/npt_cost.py                          # base DeePMD + GFN1's D3 side by side, 4x4 bilayer
    python benchmarks/npt_cost.py --sizes 2x2 4x4 --steps 60 --rounds 3
    python benchmarks/npt_cost.py --smoke                  # seconds: the 1x1 bilayer, 10 steps (for tests)

A cell update needs the stress at the current positions and the forces after the scaling. The
sampler (``exprefine.sampling.sample``) asks the step before each update to compute the stress with
its forces, so an update costs one extra potential evaluation; computing the stress on its own
(as before the sixteenth session) costs two. Both loops below are built from the library's own
step functions (``advance``, ``c_rescale_step``), with the same random streams, so they give the
same trajectory; the benchmark checks that and prints, per cell, MD steps/s of BAOAB NVT, of NPT
with the stress from the step before, and of NPT with a separate stress evaluation, with the
number of potential evaluations per step. The three loops take turns (``--rounds``) so that a
change in the machine's load hits all of them; the medians are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from deepmd_neighbours import bilayer_state

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Row:
    """One cell: MD steps/s and potential evaluations per step of each loop."""

    size: str
    n_atoms: int
    nvt_steps_per_s: float
    npt_steps_per_s: float
    npt_separate_stress_steps_per_s: float
    npt_calls_per_step: float
    npt_separate_stress_calls_per_step: float
    same_trajectory: bool


class CountingPotential:
    """Counts the evaluations of a potential (a wrapper for timing loops; forwards ``compute``)."""

    def __init__(self, potential) -> None:
        self.potential = potential
        self.calls = 0

    def compute(self, state, **kwargs):
        self.calls += 1
        return self.potential.compute(state, **kwargs)


def run_loop(md, potential, settings, n_steps: int, seed: int, mode: str):
    """``n_steps`` MD steps; ``mode``: ``nvt``, ``npt`` (stress from the step before) or ``npt_separate``.
    Returns the final MDState and the wall time (s)."""
    import torch

    from exprefine.sampling.barostat import c_rescale_step
    from exprefine.sampling.sampler import advance

    generator = torch.Generator().manual_seed(seed)
    baro = settings.barostat
    t = time.perf_counter()
    for _ in range(n_steps):
        update = mode != "nvt" and (md.step + 1) % baro.interval_steps == 0
        md = advance(md, potential, settings, generator, stress=update and mode == "npt")
        if update:
            md = c_rescale_step(md, potential, kT_eV=settings.kT_eV, settings=baro,
                                dt_fs=baro.interval_steps * settings.timestep_fs, generator=generator)
    return md, time.perf_counter() - t


def main(argv: list[str] | None = None) -> list[Row]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=REPO / "examples" / "gcn" / "models" / "base_deepmd.pt")
    p.add_argument("--sizes", nargs="+", default=["4x4"], help="in-plane supercells of the AB bilayer")
    p.add_argument("--steps", type=int, default=40, help="MD steps per loop (a multiple of --interval)")
    p.add_argument("--interval", type=int, default=10, help="MD steps between cell updates")
    p.add_argument("--rounds", type=int, default=3, help="times each loop runs, in turns")
    p.add_argument("--threads", type=int, default=1, help="torch threads (one per term side by side)")
    p.add_argument("--smoke", action="store_true", help="the 28-atom 1x1 bilayer, 10 steps, one round")
    args = p.parse_args(argv)
    if args.smoke:
        args.sizes, args.steps, args.rounds = ["1x1"], 10, 1
    import torch

    from exprefine.potentials import SumPotential, load_model_file
    from exprefine.potentials.dftd3 import D3Dispersion
    from exprefine.reference.tblite_methods import gfn1_d3
    from exprefine.sampling import BarostatSettings, SamplerSettings
    from exprefine.sampling.integrators import initialize

    torch.set_num_threads(args.threads)
    potential = SumPotential([load_model_file(args.model), D3Dispersion(gfn1_d3())], concurrent=True)
    settings = SamplerSettings(temperature_K=300.0, timestep_fs=1.0, friction_per_ps=5.0, n_equilibration_steps=0,
                               n_production_steps=args.steps, stride_steps=args.steps,
                               barostat=BarostatSettings(pressure_bar=1.0, time_fs=500.0, interval_steps=args.interval,
                                                         coupling="semi_isotropic"))
    print(f"{args.model.name} + GFN1's D3(BJ) side by side, {args.threads} torch thread(s), {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}; BAOAB, 1 fs, a cell update every {args.interval} steps")
    print("| cell | atoms | NVT steps/s | NPT steps/s (stress from the step before) | NPT steps/s (separate stress) "
          "| NPT cost over NVT | speed-up | evaluations per step |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    modes = ("nvt", "npt", "npt_separate")
    for size in args.sizes:
        start = initialize(bilayer_state(size), potential, 300.0, torch.Generator().manual_seed(0))
        run_loop(start, potential, settings, 2, 1, "npt")  # warm-up (TorchScript, neighbour lists)
        times: dict[str, list[float]] = {mode: [] for mode in modes}
        calls, finals = {}, {}
        for _ in range(args.rounds):
            for mode in modes:
                counting = CountingPotential(potential)
                finals[mode], dt = run_loop(start, counting, settings, args.steps, 1, mode)
                times[mode].append(dt)
                calls[mode] = counting.calls / args.steps
        rate = {mode: args.steps / statistics.median(times[mode]) for mode in modes}
        same = bool(torch.equal(finals["npt"].state.positions, finals["npt_separate"].state.positions)
                    and torch.equal(finals["npt"].state.cell, finals["npt_separate"].state.cell))
        print(f"| {size} | {start.state.n_atoms} | {rate['nvt']:.2f} | {rate['npt']:.2f} | {rate['npt_separate']:.2f} "
              f"| {rate['nvt'] / rate['npt'] - 1:+.1%} | {rate['npt'] / rate['npt_separate']:.2f}× "
              f"| {calls['nvt']:.2f} / {calls['npt']:.2f} / {calls['npt_separate']:.2f} |", flush=True)
        rows.append(Row(size, start.state.n_atoms, rate["nvt"], rate["npt"], rate["npt_separate"], calls["npt"],
                        calls["npt_separate"], same))
    print("same trajectory with the stress from the step before and computed separately: "
          + ", ".join(f"{r.size} {r.same_trajectory}" for r in rows))
    return rows


if __name__ == "__main__":
    main()
