"""Wall time of the two-state-point argon refinement with 1 and with 2 processes (prints figures).

Runs ``examples/argon/two_state_points.yaml`` (500 atoms per state point; its synthetic data must
exist: run ``python examples/argon/two_state_points.py`` once) for ``--updates`` updates without
the final check, first as ``python -m exprefine refine`` (1 rank: both state points in turn), then
as ``torchrun --nproc-per-node 2`` (gloo; one state point per rank), each with one torch thread
per process, and prints the wall time of the refinement and per update of both, their ratio, and
whether both runs took the same losses (they must: same seeds, exact sums).

``--layout groups`` runs ``examples/argon/lj.yaml`` instead: one state point (500 atoms, the Yarnell
g(r)) with 2 replicas in 2 replica groups — one MD chain per rank, and each rank computes the
energies and gradient of its own chain's frames at every update.

Run:  python benchmarks/distributed_argon.py [--updates 2] [--layout points|groups] [--out DIR] [--json FILE]

Issue 18's goal is ≥ 1.7× faster with 2 processes on a 2-core machine; other jobs on the same
cores change the figure, so the load average before each run is printed with it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "examples" / "argon" / "two_state_points.yaml"
#: the layouts: config and --set overrides
LAYOUTS = {
    "points": (CONFIG, ()),
    "groups": (REPO / "examples" / "argon" / "lj.yaml", ("system.n_replicas=2", "system.replica_groups=2")),
}


@dataclass
class RankRun:
    """One refinement: ranks, wall time of the whole command, of the refinement itself, of the first
    sampling of every state point (before update 0) and of each update (its resampling included), in s."""

    ranks: int
    command_wall_s: float
    refinement_wall_s: float
    first_sampling_s: float
    per_update_s: list[float]
    losses: list[float]
    load_average_before: float


def command(ranks: int, run_dir: Path, updates: int, layout: str = "points") -> list[str]:
    config, overrides = LAYOUTS[layout]
    cli = ["-m", "exprefine", "refine", str(config), "--no-progress", "--overwrite",
           "--set", f"run_dir={run_dir}", "--set", f"refine.n_updates={updates}", "--set", "refine.final_check=false"]
    for item in overrides:
        cli += ["--set", item]
    if ranks == 1:
        return [sys.executable, *cli]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}", *cli]


def run(ranks: int, run_dir: Path, updates: int, layout: str = "points") -> RankRun:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    load = os.getloadavg()[0]
    t = time.perf_counter()
    done = subprocess.run(command(ranks, run_dir, updates, layout), env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"{ranks} rank(s) failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    per_update = [float(r["wall_time_s"]) for r in rows]  # the log's wall time is each update's own
    total = float(json.loads((run_dir / "summary.json").read_text())["wall_time_s"])
    return RankRun(ranks, wall, total, total - sum(per_update), per_update, [float(r["loss"]) for r in rows], load)


def main(argv: list[str] | None = None) -> list[RankRun]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("/tmp/exprefine_distributed_argon"))
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="points",
                        help="points: two state points, one per rank; groups: one state point, one replica group per rank")
    parser.add_argument("--json", type=Path, default=None, help="also write both runs to this JSON file")
    args = parser.parse_args(argv)
    config, overrides = LAYOUTS[args.layout]
    print(f"{config.relative_to(REPO)} {' '.join(overrides)}, {args.updates} updates, 1 torch thread per process, "
          f"{os.cpu_count()} cores", flush=True)
    runs = []
    for ranks in (1, 2):
        r = run(ranks, args.out / f"{args.layout}_ranks_{ranks}", args.updates, args.layout)
        runs.append(r)
        print(f"{ranks} rank(s): refinement {r.refinement_wall_s:7.1f} s (command {r.command_wall_s:7.1f} s): "
              f"first sampling {r.first_sampling_s:.1f} s, updates {', '.join(f'{s:.1f}' for s in r.per_update_s)} s; "
              f"load average before {r.load_average_before:.2f}", flush=True)
    one, two = runs
    same = len(one.losses) == len(two.losses) and all(
        abs(a - b) <= 1e-10 * max(abs(a), 1e-300) for a, b in zip(one.losses, two.losses))
    resampled = [k for k in range(1, len(one.per_update_s))]  # update 0 reweights the first trajectories
    per_update = (sum(one.per_update_s[k] for k in resampled) / max(1e-9, sum(two.per_update_s[k] for k in resampled))
                  if resampled else float("nan"))
    print(f"speed-up with 2 ranks: refinement {one.refinement_wall_s / two.refinement_wall_s:.2f}×, "
          f"command {one.command_wall_s / two.command_wall_s:.2f}×, first sampling "
          f"{one.first_sampling_s / two.first_sampling_s:.2f}×, updates 1.. {per_update:.2f}×; "
          f"same losses (1e-10): {same}")
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=2) + "\n")
    return runs


if __name__ == "__main__":
    main()
