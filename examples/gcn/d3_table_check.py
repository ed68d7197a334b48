"""How well the LAMMPS pair table of a refined D3 term stands in for the term itself.

    python examples/gcn/d3_table_check.py            # H3 on its 20-ps check frames → results/strategies/d3_table_check.json
    python examples/gcn/d3_table_check.py --smoke    # 4 frames (a test runs it)

LAMMPS's ``pair_style dispersion/d3`` takes only published functionals' parameters, so a refinement
writes its refined D3(BJ) also as a pair table at the coordination numbers of its structure
(``refined_d3bj_pairs.table``, :func:`exprefine.builders.save_d3_pair_tables`). On MD frames of the
refined model this script compares, per frame: forces of the table with the full refined D3's and
with the generator's D3 (GFN1's; the base DeePMD term is common to all three models, so these are
the force errors of "base + table" and of the refined model against the reference), mean-removed
energies, and the interlayer spacing reweighted from the full model to "base + table" (NPT frames:
weights exp(−ΔE/kT), ΔE = E_table − E_D3; N_eff/N says how far the reweighting reaches).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from common import relative_to_repo, setup
from strategies import n_layers

HERE = Path(__file__).resolve().parent


@dataclass
class TableCheck:
    """Table vs full term on the frames of one trajectory (forces RMS in meV/Å, energies in meV/atom)."""

    run: str
    trajectory: str
    n_frames: int
    n_atoms: int
    c6_eV_A6: list[float]
    c6_sd_eV_A6: list[float]
    force_rms_table_vs_full_meV_per_A: float
    force_rms_full_vs_reference_meV_per_A: float
    force_rms_table_vs_reference_meV_per_A: float
    force_rms_full_term_meV_per_A: float
    energy_sd_table_vs_full_meV_per_atom: float
    energy_mean_table_minus_full_meV_per_atom: float
    effective_fraction: float
    spacing_sampled_A: float
    spacing_reweighted_to_table_A: float


def rms_meV(x) -> float:
    return 1000.0 * float(x.square().mean().sqrt())


def main(argv: list[str] | None = None) -> TableCheck:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=HERE / "runs" / "strategies" / "h3_long_polish")
    p.add_argument("--trajectory", type=Path,
                   default=HERE / "results" / "strategies" / "md" / "h3_long_polish_check20ps_seed203.pt")
    p.add_argument("--stride", type=int, default=2, help="every STRIDE-th frame")
    p.add_argument("--out", type=Path, default=HERE / "results" / "strategies" / "d3_table_check.json")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--smoke", action="store_true", help="4 frames, written under --out's folder as *_smoke.json")
    args = p.parse_args(argv)
    setup(args.threads)
    import torch

    from exprefine.builders import build_system_state
    from exprefine.config import load_config
    from exprefine.observables import InterlayerSpacing
    from exprefine.potentials.dftd3 import D3Dispersion, d3_pair_dispersion, load_d3_parameters
    from exprefine.reference import gfn1_d3
    from exprefine.reweighting import effective_sample_size, log_weights
    from exprefine.trajectory import Trajectory
    from exprefine.units import kT_eV

    cfg = load_config(args.run / "config.yaml")
    structure = build_system_state(cfg.state_points()[0].system)
    numbers = structure.atomic_numbers.numpy()
    species = ["C", "N"]
    parameters = load_d3_parameters(args.run / "refined_d3bj.json")
    table, coefficients = d3_pair_dispersion(parameters, numbers, structure.positions.numpy(), species,
                                             structure.cell[0].numpy())
    full, reference = D3Dispersion(parameters), D3Dispersion(gfn1_d3())
    trajectory = Trajectory.load(args.trajectory)
    frames = list(range(0, trajectory.n_frames, args.stride))[: 4 if args.smoke else None]
    n_atoms = trajectory.n_atoms
    d_table_full, d_full_ref, d_table_ref, f_full, e_table, e_full = [], [], [], [], [], []
    for k in frames:
        state = trajectory.as_state([k])
        a, b, c = (term.compute(state) for term in (table, full, reference))
        d_table_full.append(a.forces_eV_per_A - b.forces_eV_per_A)
        d_full_ref.append(b.forces_eV_per_A - c.forces_eV_per_A)
        d_table_ref.append(a.forces_eV_per_A - c.forces_eV_per_A)
        f_full.append(b.forces_eV_per_A)
        e_table.append(float(a.energy_eV[0]))
        e_full.append(float(b.energy_eV[0]))
    de = torch.tensor(e_table, dtype=torch.float64) - torch.tensor(e_full, dtype=torch.float64)
    log_w = log_weights(torch.tensor(e_table, dtype=torch.float64), torch.tensor(e_full, dtype=torch.float64),
                        kT_eV(cfg.sampling.temperature_K))
    spacing = InterlayerSpacing(n_layers(cfg)).evaluate(trajectory).double()[frames]
    check = TableCheck(
        run=relative_to_repo(args.run), trajectory=relative_to_repo(args.trajectory), n_frames=len(frames),
        n_atoms=n_atoms, c6_eV_A6=list(coefficients.c6_eV_A6), c6_sd_eV_A6=list(coefficients.c6_sd_eV_A6),
        force_rms_table_vs_full_meV_per_A=rms_meV(torch.cat(d_table_full)),
        force_rms_full_vs_reference_meV_per_A=rms_meV(torch.cat(d_full_ref)),
        force_rms_table_vs_reference_meV_per_A=rms_meV(torch.cat(d_table_ref)),
        force_rms_full_term_meV_per_A=rms_meV(torch.cat(f_full)),
        energy_sd_table_vs_full_meV_per_atom=1000.0 * float(de.std()) / n_atoms,
        energy_mean_table_minus_full_meV_per_atom=1000.0 * float(de.mean()) / n_atoms,
        effective_fraction=effective_sample_size(log_w) / len(frames),
        spacing_sampled_A=float(spacing.mean()),
        spacing_reweighted_to_table_A=float((log_w.exp() * spacing).sum()),
    )
    out = args.out.with_name(args.out.stem + "_smoke.json") if args.smoke else args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(asdict(check), indent=1) + "\n")
    for key, value in asdict(check).items():
        print(f"{key}: {value}")
    return check


if __name__ == "__main__":
    main()
