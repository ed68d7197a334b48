"""examples/gcn/report.py --smoke on a one-update run of strategy C (base DeePMD + pair dispersion).

The run writes its learned pair correction as a LAMMPS table; the report must use the corrected
model everywhere: in its closed-loop section, in the transferability study (``--run``) and in the
native-tool check (DeePMD-kit's ``DP`` summed with the table through ASE).
"""

from __future__ import annotations

import importlib
import json
import sys

import pytest

from conftest import REPO

pytest.importorskip("deepmd.pt")
pytest.importorskip("tblite")
pytest.importorskip("dftd3")

GCN_DIR = REPO / "examples" / "gcn"
DATA = GCN_DIR / "data" / "layers6" / "synthetic_sq_neutron.csv"

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    if not DATA.exists():
        pytest.skip("the 6-layer synthetic data are not there (synthetic_experiment.py --layers 6)")
    from exprefine.config import load_config
    from exprefine.workflows import run_refinement

    run = tmp_path_factory.mktemp("strategy_c") / "run"
    cfg = load_config(GCN_DIR / "strategy_c_dispersion.yaml", [
        f"run_dir={run}", "sampling.equilibration_ps=0.01", "sampling.production_ps=0.05",
        "sampling.frame_interval_fs=10", "sampling.resample_equilibration_ps=0.005", "refine.n_updates=1"])
    run_refinement(cfg, progress=False)
    return run


def test_report_smoke_uses_the_corrected_model_everywhere(tiny_run):
    sys.path.insert(0, str(GCN_DIR))
    try:
        report = importlib.import_module("report")
    finally:
        sys.path.remove(str(GCN_DIR))
    assert (tiny_run / "refined_pairs.table").exists() and (tiny_run / "refined_pairs.lammps").exists()
    assert report.main(["--run", str(tiny_run), "--smoke"]) == 0
    out = tiny_run / "report"
    text = (out / "report.md").read_text()
    assert "## Closed loop" in text and "binding energy" in text
    data = json.loads((out / "report.json").read_text())
    loop = data["closed_loop"]
    assert loop["held_out"]["base"]["force_rmse_meV_per_A"] > 5.0  # the base lacks D3
    assert set(loop["binding"]) == {"base", "refined", "reference"}
    assert loop["binding"]["reference"]["binding_energy_meV_per_atom"] > loop["binding"]["base"]["binding_energy_meV_per_atom"]
    assert data["native_tool"] is not None and (out / "nvt_native.pt").exists()
    refined_study = json.loads((out / "transferability" / "run_refined" / "transferability.json").read_text())
    assert refined_study["model"].endswith("run")  # the run's potential, not the base model file
