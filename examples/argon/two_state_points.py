"""Two state points in one refinement: the measured 85 K g(r) and a synthetic 120 K g(r).

1. If ``data/synthetic_120K/g_r.csv`` is missing, make it: textbook LJ argon (σ = 3.405 Å,
   ε/k_B = 119.8 K) sampled at the T120_synthetic state point of ``two_state_points.yaml``
   (120 K, 0.0180 Å⁻³, 500 atoms) for ``--target-ps``; its g(r) on the target's grid.
2. Refine ``two_state_points.yaml`` (the wrong start of lj.yaml) against both state points.
3. Write ``results/two_state_points.json``: parameters before/after, their distance from the
   generator of the synthetic point, each state point's g(r) RMSE before/after, wall time.

Run:  python examples/argon/two_state_points.py [--target-ps 20] [--set refine.n_updates=6]
      python examples/argon/two_state_points.py --smoke --out /tmp/x   (32 atoms, 1 update; seconds)
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from exprefine.builders import build_observable, build_system_state, sampler_settings
from exprefine.config import Config, StatePointSpec, apply_overrides, parse_config
from exprefine.potentials import LennardJones
from exprefine.sampling import sample
from exprefine.units import kelvin_to_eV
from exprefine.workflows import run_refinement

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CONFIG = HERE / "two_state_points.yaml"
SYNTHETIC = "T120_synthetic"
SIGMA_GENERATOR_A = 3.405
EPSILON_GENERATOR_K = 119.8
SIGMA_KEY = "sigma_A[Ar-Ar]"
EPSILON_KEY = "epsilon_K[Ar-Ar]"


@dataclass
class TwoStatePointResult:
    """The refinement against both state points, as written to ``results/two_state_points.json``."""

    config: str
    run_dir: str
    synthetic_data: str
    threads: int
    n_updates: int
    n_samplings: int
    wall_time_s: float
    wall_time_per_update_s: float
    sigma_A_before: float
    epsilon_K_before: float
    sigma_A_after: float
    epsilon_K_after: float
    generator_sigma_A: float
    generator_epsilon_K: float
    sigma_rel_error_vs_generator: float
    epsilon_rel_error_vs_generator: float
    #: each state point's g(r) RMSE at the start and in the final check run (None without one)
    rmse_before: dict[str, float]
    rmse_after: dict[str, float] | None


def _relative(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def smoke_raw(raw: dict[str, Any], out: Path) -> dict[str, Any]:
    """The config shrunk to 32 atoms per state point, a 5.5 Å cutoff and one short update."""
    raw["run_dir"] = str(out / "run")
    for point, density in zip(raw["systems"], (0.02125, 0.0180)):
        point.pop("structure_file", None)
        point["lattice"] = {"element": "Ar", "kind": "fcc", "number_density_per_A3": density, "repeat": 2}
        point.setdefault("sampling", {})["equilibration_ps"] = 0.2
        target = point["targets"][0]
        target["observable"]["r_max_A"] = 5.5
        target["observable"]["bin_width_A"] = 0.1
        target["fit_range_A"] = [3.0, 5.4]
    raw["systems"][1]["targets"][0]["data"]["file"] = str(out / "g_r_synthetic_120K.csv")
    raw["potential"]["terms"][0]["cutoff_A"] = 5.5
    raw["sampling"].update(equilibration_ps=0.2, production_ps=0.3, resample_equilibration_ps=0.1)
    raw["refine"].update(n_updates=1, final_check=False)
    return raw


def synthetic_point(cfg: Config) -> StatePointSpec:
    """The state point whose g(r) the generator makes."""
    return next(p for p in cfg.state_points() if p.name == SYNTHETIC)


def make_synthetic_g_r(spec: StatePointSpec, cutoff_A: float, target_ps: float, out_csv: Path) -> None:
    """Sample the generator (textbook LJ argon) at ``spec``'s state point and write its g(r) (r in Å)."""
    generator = LennardJones(["Ar"], SIGMA_GENERATOR_A, kelvin_to_eV(EPSILON_GENERATOR_K), cutoff_A=cutoff_A)
    generator = generator.to(torch.float64)
    settings = sampler_settings(spec.sampling.model_copy(update={"production_ps": target_ps, "seed": 1234}))
    result = sample(generator, build_system_state(spec.system), settings, progress=False)
    rdf = build_observable(spec.targets[0].observable, spec.sampling.temperature_K)
    g = rdf.evaluate(result.trajectory).mean(0).detach().numpy()
    grid = rdf.grid()
    assert grid is not None
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(out_csv, np.column_stack([grid.numpy(), g]), delimiter=",", header="r_angstrom,g", comments="",
               fmt="%.6f")


def load_raw(overrides: list[str], smoke_out: Path | None) -> dict[str, Any]:
    raw = apply_overrides(yaml.safe_load(CONFIG.read_text()), overrides)
    return smoke_raw(raw, smoke_out) if smoke_out is not None else raw


def summarise(cfg: Config, result, data_csv: Path) -> TwoStatePointResult:
    before = result.history[0].parameters if result.history else result.parameters
    after = result.parameters
    sigma, eps = after[SIGMA_KEY], after[EPSILON_KEY]
    n = max(1, len(result.history))
    return TwoStatePointResult(
        config=_relative(CONFIG), run_dir=_relative(Path(cfg.run_dir)), synthetic_data=_relative(data_csv),
        threads=torch.get_num_threads(), n_updates=len(result.history), n_samplings=result.n_samplings,
        wall_time_s=result.wall_time_s, wall_time_per_update_s=result.wall_time_s / n,
        sigma_A_before=before[SIGMA_KEY], epsilon_K_before=before[EPSILON_KEY],
        sigma_A_after=sigma, epsilon_K_after=eps,
        generator_sigma_A=SIGMA_GENERATOR_A, generator_epsilon_K=EPSILON_GENERATOR_K,
        sigma_rel_error_vs_generator=sigma / SIGMA_GENERATOR_A - 1,
        epsilon_rel_error_vs_generator=eps / EPSILON_GENERATOR_K - 1,
        rmse_before={name: ev.rmse["g_r"] for name, ev in result.point_before.items()},
        rmse_after={name: ev.rmse["g_r"] for name, ev in result.point_after.items()} if result.point_after else None,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target-ps", type=float, default=20.0, help="length of the generator's run (ps)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override key=value")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted refinement")
    parser.add_argument("--smoke", action="store_true", help="32 atoms per state point, one update (CI)")
    parser.add_argument("--out", type=Path, default=None, help="with --smoke: folder of every output")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    smoke_out = (args.out or HERE / "runs" / "two_state_points_smoke") if args.smoke else None
    raw = load_raw(args.overrides, smoke_out)
    data_csv = synthetic_data_file(raw)
    if not data_csv.exists():
        # the config names the synthetic file, so it validates only once the file exists
        draft = parse_config(_without_synthetic_file(raw), source=str(CONFIG), base=HERE)
        torch.set_num_threads(draft.threads or torch.get_num_threads())
        cutoff_A = float(raw["potential"]["terms"][0]["cutoff_A"])
        make_synthetic_g_r(synthetic_point(draft), cutoff_A, 0.3 if args.smoke else args.target_ps, data_csv)
    cfg = parse_config(raw, source=str(CONFIG), base=HERE)
    result = run_refinement(cfg, resume=args.resume, overwrite=not args.resume, progress=False, progress_lines=True)
    summary = summarise(cfg, result, data_csv)
    out_json = (smoke_out if smoke_out is not None else HERE / "results") / "two_state_points.json"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(asdict(summary), indent=2) + "\n")
    print(json.dumps(asdict(summary), indent=2))
    return 0


def synthetic_data_file(raw: dict[str, Any]) -> Path:
    """The synthetic state point's data file (relative paths against this folder)."""
    point = next(p for p in raw["systems"] if p["name"] == SYNTHETIC)
    path = Path(point["targets"][0]["data"]["file"])
    return path if path.is_absolute() else HERE / path


def _without_synthetic_file(raw: dict[str, Any]) -> dict[str, Any]:
    """The config with the synthetic point's target pointing at the Yarnell file (same columns), so
    that it validates before the synthetic file exists; only its structure and sampling are used."""
    copy = yaml.safe_load(yaml.safe_dump(raw))
    yarnell = copy["systems"][0]["targets"][0]["data"]["file"]
    point = next(p for p in copy["systems"] if p["name"] == SYNTHETIC)
    point["targets"][0]["data"] = dict(point["targets"][0]["data"], file=yarnell, number_density_per_A3=None)
    return copy


if __name__ == "__main__":
    raise SystemExit(main())
