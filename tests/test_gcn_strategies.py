"""examples/gcn/strategies.py --smoke: every stage of the strategy comparison on tiny runs.

In smoke mode the comparison holds the base DeePMD and strategy C (base + pair dispersion). Without
a run of C its parameters are the config's start, C6 = C8 = 0: the model *is* the base model, so
every closed-loop figure of C must equal the base's exactly — on the held-out label frames and on
the reference's MD frames — and both must be the D3 term the base lacks (non-zero).
"""

from __future__ import annotations

import importlib
import json
import sys

import pytest

from conftest import REPO

pytest.importorskip("deepmd.pt")
pytest.importorskip("dftd3")
pytest.importorskip("tblite")

GCN_DIR = REPO / "examples" / "gcn"

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD:UserWarning"),
    pytest.mark.filterwarnings("ignore:The TorchScript type system:UserWarning"),
]


@pytest.fixture(scope="module")
def script():
    sys.path.insert(0, str(GCN_DIR))
    try:
        return importlib.import_module("strategies")
    finally:
        sys.path.remove(str(GCN_DIR))


def test_smoke_writes_the_comparison_with_the_figures_the_issue_asks_for(script, tmp_path, monkeypatch):
    if not (GCN_DIR / "data" / "layers6" / "synthetic_sq_neutron.csv").exists():
        pytest.skip("the 6-layer synthetic data are not there (synthetic_experiment.py --layers 6)")
    assert script.main(["--smoke", "--out", str(tmp_path / "strategies")]) == 0
    entries = json.loads((tmp_path / "strategies" / "strategies.json").read_text())
    assert json.loads((tmp_path / "strategies.json").read_text()) == entries  # the copy the issue names
    assert [e["name"] for e in entries] == ["base", "c_dispersion"]
    base, c = entries
    for e in entries:
        assert {"name", "model_files", "label_force_rmse_meV_per_A", "sq_low_q_chi2_per_point", "sizes",
                "chosen"} <= set(e)
        for row in e["sizes"].values():
            assert {"force_rmse_vs_reference_meV_per_A", "energy_sd_vs_reference_meV_per_atom"} <= set(row)
    assert c["status"].startswith("not run")
    # C at C6 = C8 = 0 is the base model: the same figures to the last digit
    assert c["held_out"]["vs_reference"] == base["held_out"]["vs_reference"]
    assert c["sizes"]["1x1"]["reference_frames"] == base["sizes"]["1x1"]["reference_frames"]
    assert not c["chosen"] and not base["chosen"]
    # the base misses D3: a force error against the reference that is neither zero nor absurd
    assert 5.0 < base["held_out"]["vs_reference"]["force_rmse_meV_per_A"] < 200.0
    assert base["binding"]["binding_energy_meV_per_atom"] > 0 and 3.0 < base["binding"]["d_min_A"] < 7.0
    assert (tmp_path / "strategies" / "strategies.md").read_text().count("\n") == 4  # header, rule, two models


def test_md_only_fills_the_cache_and_other_sizes_use_the_reference_frames_only(script, tmp_path):
    if not (GCN_DIR / "data" / "layers6" / "synthetic_sq_neutron.csv").exists():
        pytest.skip("the 6-layer synthetic data are not there (synthetic_experiment.py --layers 6)")
    out = tmp_path / "strategies"
    assert script.main(["--smoke", "--md-only", "--only", "base", "--out", str(out)]) == 0
    # its own runs at each size only (the check is the full run's; the reference's runs are the reference's)
    assert sorted(p.name for p in (out / "md").glob("*.pt")) == ["base_1x1.pt"]
    assert not (out / "base.json").exists()  # MD only: nothing measured
    # a full run finds its own MD cached; at a size outside --own-md-sizes it scores the reference's frames only
    assert script.main(["--smoke", "--only", "base", "--own-md-sizes", "2x2", "--out", str(out)]) == 0
    row = json.loads((out / "base.json").read_text())["sizes"]["1x1"]
    assert "skipped" in row["own_frames"] and row["d_A"] is None
    assert row["reference_frames"]["force_rmse_meV_per_A"] > 0
    # a larger cell added to the entry later; what it had stays
    assert script.main(["--smoke", "--add-sizes", "--only", "base", "--sizes", "1x1", "2x1", "--out", str(out)]) == 0
    sizes = json.loads((out / "base.json").read_text())["sizes"]
    assert list(sizes) == ["1x1", "2x1"] and sizes["1x1"] == row
    assert sizes["2x1"]["n_atoms"] == 56 and sizes["2x1"]["own_frames"]["n_frames"] > 0


def test_the_c2_configs_fixed_dispersion_shape_is_what_d3_pair_prior_prints(capsys):
    # strategy C2 fixes C6, C8 and R at D3's values for the truth's cell; the config must hold
    # exactly what the script derives (to its 4 printed decimals), and the smoke cell runs too
    import yaml

    from conftest import import_script

    prior = import_script(GCN_DIR, "d3_pair_prior")
    prior.main([])
    printed = capsys.readouterr().out
    term = yaml.safe_load((GCN_DIR / "strategy_c2_dispersion_prior.yaml").read_text())["potential"]["terms"][1]
    for key in ("c6_eV_A6", "c8_eV_A8", "damping_radius_A"):
        line = next(row for row in printed.splitlines() if row.strip().startswith(key))
        values = [float(x) for x in line.split("[")[1].split("]")[0].split(",")]
        assert values == term[key], key
    assert term["s6"] == 0.0 and term["s8"] == 0.0 and term["trainable"] == ["s6", "s8"]
    prior.main(["--smoke"])
    smoke = capsys.readouterr().out
    assert smoke.startswith("# 28 atoms")


def test_correction_bounds_smoke_fits_the_generators_own_form_exactly(tmp_path):
    # the generator's own form (D3 with GFN1 damping) must leave nothing and recover s6 = 1, s8 = 2.4;
    # every other form leaves a floor between that and the base model's error
    from conftest import import_script

    bounds = import_script(GCN_DIR, "correction_bounds").main(["--smoke", "--out", str(tmp_path)])
    exact = bounds[-1]
    assert exact.best_parameters == pytest.approx([1.0, 2.4], abs=1e-5)
    missing = exact.missing_force_rms_meV_per_A["2x2 held out"]
    assert missing > 20.0  # the D3 force the base lacks, ≈ 30 meV/Å
    assert exact.residual_rms_meV_per_A["2x2 held out"] < 1e-3 * missing
    for b in bounds[:-1]:
        assert 0.0 < b.residual_rms_meV_per_A["2x2 held out"] < missing
    assert (tmp_path / "correction_bounds_smoke.md").read_text().count("\n") == len(bounds) + 3


def test_every_strategy_config_parses_and_g_puts_d3s_priors_on_its_scales():
    from exprefine.builders import build_potential, term_priors
    from exprefine.config import load_config

    names = sorted(p.name for p in GCN_DIR.glob("strategy_*.yaml"))
    assert len(names) >= 9
    configs = {name: load_config(GCN_DIR / name) for name in names}
    pytest.importorskip("dftd3")
    pytest.importorskip("deepmd.pt")
    cfg = configs["strategy_g_d3_prior.yaml"]
    priors = term_priors(cfg, build_potential(cfg))
    assert [(p.name, float(p.mean), float(p.sigma)) for p in priors] == [("terms.1.s6", 1.0, 0.1),
                                                                          ("terms.1.s8", 0.7875, 1.0)]
    assert all(float(p.parameter.detach()) == float(p.mean) for p in priors)  # it starts at PBE-D3(BJ)
    # E is G's correction on the base MACE: the same term and priors
    e = configs["strategy_e_mace_d3_prior.yaml"]
    assert e.potential.terms[0].kind == "mace" and e.potential.terms[1] == cfg.potential.terms[1]
    # H is G with the damping refined too: same start, G's priors plus two on a1, a2
    h = configs["strategy_h_d3_damping.yaml"]
    assert h.potential.terms[1].trainable == ["s6", "s8", "a1", "a2"]
    assert h.potential.terms[1].model_copy(update={"trainable": ["s6", "s8"], "prior": {}}) == \
        cfg.potential.terms[1].model_copy(update={"prior": {}})
    assert h.model_copy(update={"potential": cfg.potential, "run_dir": cfg.run_dir}) == cfg
    names_h = [(p.name, float(p.mean), float(p.sigma)) for p in term_priors(h, build_potential(h))]
    assert names_h[:2] == [("terms.1.s6", 1.0, 0.1), ("terms.1.s8", 0.7875, 1.0)]
    assert names_h[2:] == [("terms.1.a1", 0.4289, 0.2), ("terms.1.a2", 4.4407, 1.0)]
    # G2, G3 and H2, H3 are the next DiffTRe iterations of G and H: each starts from the previous
    # stage's model and reweights that model's own 20-ps check, with the same sampling and targets
    for first, second, third, caps in (("g_d3_prior", "g2_long_polish", "g3_long_polish", (2.0, 1.0)),
                                       ("h_d3_damping", "h2_long_polish", "h3_long_polish", (1.0, 1.0))):
        start, stage2, stage3 = (configs[f"strategy_{n}.yaml"] for n in (first, second, third))
        assert stage2.potential.terms == stage3.potential.terms == start.potential.terms
        assert stage2.potential.initial_checkpoint.parts[-2:] == (first, "final_model.pt")
        assert stage3.potential.initial_checkpoint.parts[-2:] == (second, "final_model.pt")
        assert stage3.system.start_trajectory_file.name == f"{second}_check20ps_seed202.pt"
        assert (stage2.refine.max_step_kT, stage3.refine.max_step_kT, stage3.refine.segment_ps) == (*caps, 1.0)
        assert stage3.sampling == stage2.sampling and stage3.targets == stage2.targets
    h3, g3 = configs["strategy_h3_long_polish.yaml"], configs["strategy_g3_long_polish.yaml"]
    assert h3.sampling == g3.sampling and h3.targets == g3.targets  # the two families: the same data and sampling


def test_choose_compares_each_strategy_with_the_base_of_its_own_family(script):
    def entry(name, status, reference, label, sq, force):
        return script.Entry(name, "", [], reference, status, label_force_rmse_meV_per_A=label,
                            sq_low_q_chi2_per_point=sq, sizes={"2x2": {"force_rmse_vs_reference_meV_per_A": force}})

    base = entry("base", "base", "deepmd", 223.4, 2650.0, 31.5)
    good = entry("g", "finished", "deepmd", 225.5, 8.0, 2.1)
    worse_forces = entry("a", "finished", "deepmd", 224.8, 65.0, 46.0)
    mace = entry("e", "finished", "mace", 195.0, 5.0, 1.0)  # better on paper, but no MACE base to compare with
    assert script.choose([base, worse_forces, good, mace]) == "g"
    assert script.choose([base, worse_forces, mace]) is None
    mace_base = entry("base_mace", "base", "mace", 190.0, 2000.0, 30.0)
    assert script.choose([base, good, mace, mace_base]) == "e"


def test_a_strategy_that_meets_every_goal_is_chosen_over_one_with_lower_forces_that_misses_d(script):
    def entry(name, status, d, force, chi2=(8.0, 1.4, 3.6), e_b=50.0, truth=223.4, label=225.5):
        return script.Entry(
            name, "", [], "deepmd", status, label_force_rmse_meV_per_A=label, sq_low_q_chi2_per_point=chi2[0],
            check={"d_A": d, "chi2_per_point": dict(zip(("sq_low_q", "sq_high_q", "pdf"), chi2))},
            held_out={"vs_truth": {"force_rmse_meV_per_A": truth}}, binding={"binding_energy_meV_per_atom": e_b,
                                                                              "d_min_A": 2.98},
            sizes={s: {"force_rmse_vs_reference_meV_per_A": force, "energy_sd_vs_reference_meV_per_atom": 0.1}
                   for s in ("2x2", "8x4")})

    reference = entry("reference", "reference", 3.076, 0.0, chi2=(1.3, 1.0, 1.4), e_b=55.4)
    base = entry("base", "base", 3.749, 31.5, chi2=(2650.0, 2.2, 440.0), e_b=5.8, truth=225.1, label=223.4)
    g = entry("g", "finished", 3.052, 2.1)
    g2 = entry("g2", "finished", 3.070, 4.9)
    missed = script.goals(g, base, reference)
    assert [k for k, met in missed.items() if not met] == ["d_within_0.02_A"]
    assert all(script.goals(g2, base, reference).values())
    assert script.goals(base, base, reference) == {} and script.goals(g, None, reference) == {}
    for e in (g, g2):
        e.goals = script.goals(e, base, reference)
    assert script.choose([base, g, g2, reference]) == "g2"
    # a longer check counts instead of the table's: g's 20-ps d within 0.02 makes both complete
    g.long_check = {"whole": {"d_A": 3.062, "chi2_per_point": {"sq_low_q": 7.0, "sq_high_q": 1.1, "pdf": 3.6}}}
    g.goals = script.goals(g, base, reference)
    assert script.choose([base, g, g2, reference]) == "g"


def test_the_reference_config_is_the_generator_strategies_scores_against(script):
    import torch

    from exprefine.builders import build_potential, build_state
    from exprefine.config import load_config

    cfg = load_config(GCN_DIR / "reference_gfn1_d3.yaml")
    _, reference, _ = script.base_and_reference(load_config(GCN_DIR / script.BASE_CONFIG))
    state = build_state(cfg)  # the truth's 6-layer cell, 336 atoms
    ours, theirs = build_potential(cfg).compute(state), reference.compute(state)
    assert float(ours.energy_eV) == pytest.approx(float(theirs.energy_eV), abs=1e-6)
    assert torch.allclose(ours.forces_eV_per_A, theirs.forces_eV_per_A, rtol=0.0, atol=1e-6)


def test_a_long_check_runs_in_segments_and_reports_its_halves(script, tmp_path, capsys):
    out = tmp_path / "strategies"
    assert script.main(["--smoke", "--only", "base", "--long-check-ps", "20", "--out", str(out)]) == 0
    (record,) = json.loads((out / "long_checks.json").read_text())
    assert record["name"] == "base" and record["production_ps"] == 20
    whole, first, second = record["whole"], record["first_half"], record["second_half"]
    assert first["n_frames"] + second["n_frames"] == whole["n_frames"] == 2  # smoke: 0.02 ps, a frame every 10 fs
    assert set(whole["chi2_per_point"]) == {"sq_low_q", "sq_high_q", "pdf"}
    assert (out / "md" / "base_check_smoke_segments" / "segment_001.pt").exists()  # two 10-step segments
    assert "segment 2/2" in capsys.readouterr().out
    assert not (out / "strategies.json").exists()  # nothing measured: no table to rebuild
    # run again: the cached run is reused, and the record replaced, not repeated
    assert script.main(["--smoke", "--only", "base", "--long-check-ps", "20", "--out", str(out)]) == 0
    assert [r["name"] for r in json.loads((out / "long_checks.json").read_text())] == ["base"]
    # once the model is measured, the table carries its longer check
    assert script.main(["--smoke", "--only", "base", "--out", str(out)]) == 0
    (entry,) = json.loads((out / "strategies.json").read_text())
    assert entry["name"] == "base" and entry["long_check"]["whole"] == whole
    assert "| longer check |" in (out / "strategies.md").read_text()
    # another seed (for a model fitted to a check of the usual one): its own files, the seed recorded
    assert record["seed"] == 201
    assert script.main(["--smoke", "--only", "base", "--long-check-ps", "20", "--long-check-seed", "202",
                        "--out", str(out)]) == 0
    (record,) = json.loads((out / "long_checks.json").read_text())
    assert record["seed"] == 202
    assert (out / "md" / "base_check_smoke_seed202_segments" / "segment_001.pt").exists()
