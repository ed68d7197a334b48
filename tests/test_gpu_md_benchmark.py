"""benchmarks/gpu_md.py in its CPU smoke mode: every figure of one small system is measured and printed."""

from __future__ import annotations

import json

import pytest

from conftest import REPO, import_script

BENCHMARKS = REPO / "benchmarks"


def _script():
    return import_script(BENCHMARKS, "gpu_md")


def test_sizes_map_to_bilayer_cells():
    gpu_md = _script()
    assert [28 * gpu_md.cells_for(n) ** 2 for n in (100, 1000, 10000, 50000)] == [112, 1008, 10108, 49392]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_cpu_smoke_prints_every_figure(tmp_path, capsys):
    pytest.importorskip("mace")
    pytest.importorskip("deepmd")
    gpu_md = _script()
    out = tmp_path / "rows.json"
    (row,) = gpu_md.main(["--device", "cpu", "--models", "mace", "--sizes", "100", "--steps", "4", "--frames", "2",
                          "--replicas", "2", "--json", str(out)])
    assert (row.model, row.device, row.n_atoms, row.n_frames, row.note) == ("mace", "cpu", 112, 2, "")
    for value in (row.md_steps_per_s, row.batched_system_steps_per_s, row.update_md_s, row.update_energies_s,
                  row.update_gradient_s):
        assert value is not None and value > 0
    assert row.update_total_s == pytest.approx(row.update_md_s + row.update_energies_s + row.update_gradient_s)
    printed = capsys.readouterr().out
    assert "mace   cpu    N =    112: MD" in printed and "system-steps/s" in printed
    assert json.loads(out.read_text())[0]["n_atoms"] == 112


def test_cuda_without_a_gpu_says_so():
    gpu_md = _script()
    if gpu_md.torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SystemExit, match="torch sees no CUDA device"):
        gpu_md.main(["--device", "cuda"])
