"""Does a potential refined against g(r) also predict the measured S(Q)?

Samples an independent trajectory (a new seed) with each potential — the wrong start of
lj.yaml, textbook LJ (σ = 3.405 Å, ε/k_B = 119.8 K) and the refined model of a run — and
computes the neutron S(Q) of each: on the cell's commensurate q vectors (direct route,
exact for a periodic cell) below ``--q-split`` Å⁻¹ and by Fourier transform of g(r)
(r ≤ 14 Å) above it, where the direct route would need too many vectors. The measured
S(Q) (Yarnell et al. 1973, data/S_q.csv) is interpolated onto the same grid.

Run:  python examples/argon/predict_sq.py [--run runs/lj] [--config lj.yaml]
Writes RUN/S_q.png and RUN/S_q_report.json (RMSE over 1–11 Å⁻¹ and over the main peak 1.5–2.5 Å⁻¹).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from exprefine.builders import build_potential, build_state, load_potential_state, sampler_settings
from exprefine.config import load_config
from exprefine.experiment import interpolate, load_table
from exprefine.observables import StructureFactor
from exprefine.potentials import LennardJones
from exprefine.sampling import sample
from exprefine.units import kelvin_to_eV

HERE = Path(__file__).resolve().parent
RANGES_INV_A = {"1-11": (1.0, 11.0), "main_peak_1.5-2.5": (1.5, 2.5)}


@dataclass
class Prediction:
    label: str
    q_inv_A: np.ndarray
    s: np.ndarray
    rmse: dict[str, float]


def structure_factor(trajectory, q_split: float) -> tuple[np.ndarray, np.ndarray]:
    """Neutron S(Q): direct route on 0.5…q_split (step 0.1: every bin holds q vectors of a 29 Å cell),
    Fourier route on q_split…11.5 Å⁻¹ (step 0.05)."""
    low = torch.arange(0.5, q_split - 1e-9, 0.1, dtype=torch.float64)
    high = torch.arange(q_split, 11.5 + 1e-9, 0.05, dtype=torch.float64)
    direct = StructureFactor(low, direct=True).evaluate(trajectory).mean(0)
    fourier = StructureFactor(high, r_max_A=14.0, bin_width_A=0.01).evaluate(trajectory).mean(0)
    return torch.cat([low, high]).numpy(), torch.cat([direct, fourier]).numpy()


def rmse_against(q: np.ndarray, s: np.ndarray, data) -> dict[str, float]:
    out = {}
    for name, (lo, hi) in RANGES_INV_A.items():
        m = (q >= lo) & (q <= hi) & (q >= data.x[0]) & (q <= data.x[-1])
        y = np.asarray(interpolate(data, q[m])[0])
        out[name] = float(np.sqrt(np.mean((s[m] - y) ** 2)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(HERE / "lj.yaml"))
    parser.add_argument("--run", default=None, help="run directory with final_model.pt (default: the config's run_dir)")
    parser.add_argument("--q-split", type=float, default=4.0, help="direct route below, Fourier route above (Å⁻¹)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = load_config(args.config, [f"sampling.seed={args.seed}"])
    run_dir = Path(args.run) if args.run else Path(cfg.run_dir)
    data = load_table(HERE / "data" / "S_q.csv", x_column="q_inv_angstrom", y_column="S", x_unit="inverse_angstrom")
    cutoff = cfg.potential.terms[0].cutoff_A
    refined = build_potential(cfg)
    load_potential_state(refined, run_dir / "final_model.pt")
    models = {
        "start": build_potential(cfg),
        "textbook LJ": LennardJones(["Ar"], 3.405, kelvin_to_eV(119.8), cutoff),
        "refined": refined,
    }
    settings = sampler_settings(cfg.sampling)
    predictions = []
    for label, potential in models.items():
        result = sample(potential, build_state(cfg), settings, progress=True)
        q, s = structure_factor(result.trajectory, args.q_split)
        predictions.append(Prediction(label, q, s, rmse_against(q, s, data)))
        print(f"{label:12s} S(Q) RMSE " + "  ".join(f"{k}: {v:.4f}" for k, v in predictions[-1].rmse.items()),
              flush=True)

    (run_dir / "S_q_report.json").write_text(json.dumps(
        {p.label: p.rmse for p in predictions} | {"ranges_inv_A": RANGES_INV_A}, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(data.x, data.y, "k.", ms=3, label="Yarnell et al. 1973")
    for p in predictions:
        ax.plot(p.q_inv_A, p.s, label=f"{p.label} (RMSE {p.rmse['1-11']:.3f})")
    ax.axvline(args.q_split, color="0.8", lw=0.8)
    ax.set_xlabel("Q (Å⁻¹)")
    ax.set_ylabel("S(Q)")
    ax.set_xlim(0, 11.5)
    ax.legend()
    fig.tight_layout()
    fig.savefig(run_dir / "S_q.png", dpi=120)
    print(f"wrote {run_dir / 'S_q.png'} and {run_dir / 'S_q_report.json'}")


if __name__ == "__main__":
    main()
