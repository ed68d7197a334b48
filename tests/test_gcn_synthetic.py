"""examples/gcn/synthetic_experiment.py: the noise of the synthetic S(Q) carried into G(r)."""

import importlib
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import REPO

GCN_DIR = REPO / "examples" / "gcn"


@pytest.fixture(scope="module")
def script():
    sys.path.insert(0, str(GCN_DIR))
    try:
        return importlib.import_module("synthetic_experiment")
    finally:
        sys.path.remove(str(GCN_DIR))


def test_noise_transfer_matrix_is_the_library_transform(script):
    from exprefine.observables.scattering import pdf_from_structure_factor

    q = np.arange(0.3, 20.0 + 1e-9, 0.05)
    r = np.linspace(0.5, 6.0, 40)
    s = 1.0 + 0.3 * np.sin(1.7 * q) * np.exp(-0.05 * q)
    t = script.noise_transfer_matrix(q, r, 20.0)
    direct = pdf_from_structure_factor(torch.as_tensor(q), torch.as_tensor(s), torch.as_tensor(r), q_max_inv_A=20.0,
                                       lorch=True).numpy()
    np.testing.assert_allclose(t @ (s - 1.0), direct, atol=1e-10)


def test_g_sigma_matches_the_spread_of_noise_draws(script):
    q = np.arange(0.3, 30.0 + 1e-9, 0.05)
    r = np.linspace(0.5, 6.0, 12)
    curves = script.Curves(q, np.ones_like(q), r, np.zeros_like(r), r, {})
    transfer = script.noise_transfer_matrix(q, r, 30.0)
    draws = []
    for seed in range(2000):
        args = SimpleNamespace(noise_seed=seed, sigma_s0=0.005, sigma_s1=0.001, q_max=30.0)
        s_noisy, sigma_s, g_noisy, sigma_g = script.noisy_data(args, curves, transfer)
        draws.append(g_noisy)
    spread = np.std(draws, axis=0, ddof=1)
    # the sample SD of n Gaussian draws has a relative standard error 1/sqrt(2(n-1)) ≈ 1.6 %: allow 5 of them
    np.testing.assert_allclose(spread, sigma_g, rtol=5 / np.sqrt(2 * 1999))
    np.testing.assert_allclose(sigma_s, 0.005 + 0.001 * q)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_smoke_run_in_two_chains_writes_the_data(script, tmp_path):
    pytest.importorskip("deepmd.pt")
    pytest.importorskip("tblite")
    import json

    work, out = tmp_path / "work", tmp_path / "out"
    common = ["--smoke", "--work", str(work), "--out", str(out), "--nvt-chains", "2"]
    assert script.main(common + ["--chain", "1"]) == 0
    assert (work / "nvt_c1_000.pt").exists() and not (work / "nvt_000.pt").exists()
    assert not (out / "synthetic_sq_neutron.csv").exists()  # one chain alone writes no data
    assert script.main(common + ["--chain", "2"]) == 2  # no such chain: refused
    assert script.main(common) == 0  # runs chain 0, then writes the data from both
    summary = json.loads((out / "synthetic_experiment.json").read_text())
    from exprefine.trajectory import Trajectory

    frames = sum(Trajectory.load(p).n_frames for p in sorted(work.glob("nvt_*.pt")))
    assert len(list(work.glob("nvt_*.pt"))) == 2 and summary["nvt_frames"] == frames  # one segment per chain
    assert not summary["settings"]["model"].startswith("/")  # recorded relative to the repository
    rows = np.loadtxt(out / "synthetic_sq_neutron.csv", delimiter=",", skiprows=5)  # 4 comments, the header
    np.testing.assert_allclose(rows[:, 2], 0.005 + 0.001 * rows[:, 0], rtol=1e-5)
