"""Which correction form can hold the force the base model misses? A force-matching bound per form.

The synthetic experiment was made by the base DeePMD + GFN1's D3(BJ), so the force the base misses
is exactly D3's. For each correction form of the strategy comparison (``strategies.py``), its
trainable parameters are fitted by least squares directly to the D3 forces on the reference's own
MD frames of the 2×2 and 4×2 bilayers (``results/strategies/md/reference_deepmd_*.pt``), and the
residual is measured there and on the held-out 4×4 frames
(:func:`exprefine.force_matching.best_correction_bound`). No refinement against structure data can
bring a form's forces closer to the reference than this floor.

Next to each floor: where the strategy's refinement actually landed — the residual of its
correction at the refined parameters (``final_model.pt``, else the latest checkpoint), the same
frames, the same missing force (the base is frozen in every strategy with a correction, so
F_model − F_reference = F_correction − ΔF).

    python examples/gcn/correction_bounds.py          # ≈ 5 min on one core; writes results/correction_bounds.{json,md}
    python examples/gcn/correction_bounds.py --smoke  # seconds: one 2×2 frame to fit, one to hold out
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from common import setup

HERE = Path(__file__).resolve().parent
MD_DIR = HERE / "results" / "strategies" / "md"
FIT_SIZES, HELD_OUT_SIZES = ("2x2", "4x2"), ("4x4",)
PBE_A1, PBE_A2_BOHR = 0.4289, 4.4407


@dataclass
class FormBound:
    """One correction form: its strategy, parameters fitted to the D3 forces, and the floor it leaves."""

    form: str
    strategy: str
    n_parameters: int
    best_parameters: list[float]
    missing_force_rms_meV_per_A: dict[str, float]
    residual_rms_meV_per_A: dict[str, float]
    refined_status: str | None = None
    refined_residual_rms_meV_per_A: dict[str, float] | None = None
    #: for D3-scale forms: per logged update, (update, s6, s8, [a1, a2_bohr,] residual per set)
    path: list[dict] | None = None


def forms():
    """(name, strategy, correction term with only linear parameters trainable) for every form compared."""
    from exprefine.potentials import PairDispersion, PairSpline
    from exprefine.potentials.dftd3 import D3Dispersion, D3Parameters
    from exprefine.reference import gfn1_d3

    # each form with the config of the strategy that refines it (None: no strategy refines it)
    c2 = PairDispersion(["C", "N"], 12.0, switch_on_A=10.0, c6_eV_A6=[15.1974, 13.1080, 11.3919],
                        c8_eV_A8=[123.0826, 92.7176, 70.3750], damping_radius_A=[3.5705, 3.4906, 3.4159],
                        s6=0.0, s8=0.0, trainable=["s6", "s8"])
    free = PairDispersion(["C", "N"], 12.0, switch_on_A=10.0, damping_radius_A=3.5, trainable=["c6", "c8"])
    gfn1 = gfn1_d3()
    return [
        ("pair dispersion, D3 shape (PBE damping), s6 and s8", "C2", c2, "strategy_c2_dispersion_prior.yaml"),
        ("pair dispersion, C6 and C8 per pair, R = 3.5 Å", "C (at its start R)", free, "strategy_c_dispersion.yaml"),
        ("pair splines 3–10 Å, knots every 0.5 Å", "B", PairSpline(["C", "N"], cutoff_A=10.0, r_min_A=3.0, n_knots=15),
         "strategy_b_spline.yaml"),
        ("pair splines 1–10 Å, knots every 0.5 Å", "—", PairSpline(["C", "N"], cutoff_A=10.0, r_min_A=1.0, n_knots=19),
         None),
        ("D3(BJ) with PBE damping, s6 and s8", "F", D3Dispersion(
            D3Parameters(s6=0.0, s8=0.0, a1=PBE_A1, a2=PBE_A2_BOHR, cutoff_two_body_bohr=40.0), trainable=("s6", "s8")),
         "strategy_f_d3_scales.yaml"),
        ("D3(BJ) with PBE damping, s6 and s8, D3's priors (the same form as F)", "G", D3Dispersion(
            D3Parameters(s6=0.0, s8=0.0, a1=PBE_A1, a2=PBE_A2_BOHR, cutoff_two_body_bohr=40.0), trainable=("s6", "s8")),
         "strategy_g_d3_prior.yaml"),
        ("D3(BJ) with GFN1 damping (the generator's), s6 and s8", "— (check: s6 = 1, s8 = 2.4)",
         D3Dispersion(gfn1, trainable=("s6", "s8")), None),
        # the four-parameter form holds the generator, so its floor is the row above's (0); fitted
        # linearly at GFN1's damping, which the refinement must find on its own
        ("D3(BJ), s6, s8, a1 and a2, D3's priors (floor at GFN1's damping)", "H",
         D3Dispersion(gfn1, trainable=("s6", "s8")), "strategy_h_d3_damping.yaml"),
    ]


def refinement_path(config: str, term, sets, missing) -> list[dict] | None:
    """The residual at the parameters of every update in the strategy's log (forms whose trainable
    parameters are s6 and s8, and for D3 also a1 and a2, as the log names them); None without a log."""
    from dataclasses import replace

    import torch

    from exprefine.force_matching import residual_rms
    from exprefine.potentials import D3Dispersion
    from strategies import load_config

    cfg = load_config(config)
    log = Path(cfg.run_dir) / "log.jsonl"
    if not log.exists():
        return None
    # a moved damping is evaluated with the strategy's own D3 settings (its cutoffs), not the form's
    own_d3 = [t.build(torch.float64).settings for t in cfg.potential.terms if t.kind == "dftd3"]
    rows = []
    for line in log.read_text().splitlines():
        record = json.loads(line)
        values = record["parameters"]
        row = {"update": record["update"], "loss": record["loss"], "accepted": record.get("accepted", True),
               **{k: values[k] for k in ("s6", "s8", "a1", "a2_bohr") if k in values}}
        if "a1" in values or "a2_bohr" in values:  # the damping moved: a fixed term at the logged values
            settings = own_d3[0]
            moved = D3Dispersion(replace(settings, s6=values["s6"], s8=values["s8"],
                                         a1=values.get("a1", settings.a1), a2=values.get("a2_bohr", settings.a2)))
            residual = {name: residual_rms(moved, sets[name], missing[name]) for name in sets}
        else:
            residual = {name: residual_rms(term, sets[name], missing[name], [values["s6"], values["s8"]])
                        for name in sets}
        rows.append({**row, "residual_rms_meV_per_A": residual})
    return rows


def refined_residual(config: str, sets, missing) -> tuple[str, dict[str, float]] | None:
    """(status, residual RMS per set, meV/Å) of the correction terms of a strategy's refined model; None
    when its run has neither a final model nor a checkpoint."""
    from exprefine.force_matching import residual_rms
    from exprefine.potentials import SumPotential
    from strategies import load_config, refined_potential

    potential, status, _, _ = refined_potential(load_config(config))
    if status.startswith("not run"):
        return None
    correction = SumPotential(potential.term_list()[1:])
    return status, {name: residual_rms(correction, states, missing[name]) for name, states in sets.items()}


def frame_sets(smoke: bool):
    from exprefine.trajectory import Trajectory

    sets = {}
    for size in FIT_SIZES + HELD_OUT_SIZES:
        trajectory = Trajectory.load(MD_DIR / f"reference_deepmd_{size}.pt")
        sets[size] = [trajectory.as_state(sl) for sl in trajectory.chunks(1)]
    if smoke:
        return {"2x2": sets["2x2"][:1], "2x2 held out": sets["2x2"][1:2]}
    return sets


def markdown(bounds: list[FormBound], sets: list[str]) -> str:
    head = ["correction form", "strategy", "parameters"] + [f"floor {s} (meV/Å)" for s in sets]
    head += [f"refined {s}" for s in sets] + ["refinement"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    missing = bounds[0].missing_force_rms_meV_per_A
    lines.append("| none (the base model) | base | 0 | " + " | ".join(f"{missing[s]:.1f}" for s in sets) + " | "
                 + " | ".join("—" for _ in sets) + " | — |")
    for b in bounds:
        landed = b.refined_residual_rms_meV_per_A
        lines.append(f"| {b.form} | {b.strategy} | {b.n_parameters} | "
                     + " | ".join(f"{b.residual_rms_meV_per_A[s]:.1f}" for s in sets) + " | "
                     + " | ".join("—" if landed is None else f"{landed[s]:.1f}" for s in sets)
                     + f" | {b.refined_status or '—'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[FormBound]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one frame to fit, one to hold out (seconds)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="folder of correction_bounds.json/.md")
    args = parser.parse_args(argv)
    setup(1)
    from exprefine.force_matching import best_correction_bound, force_difference
    from exprefine.potentials import D3Dispersion, SumPotential, load_model_file
    from exprefine.reference import gfn1_d3

    sets = frame_sets(args.smoke)
    fit_on = ["2x2"] if args.smoke else list(FIT_SIZES)
    base = load_model_file(HERE / "models" / "base_deepmd.pt")
    reference = SumPotential([load_model_file(HERE / "models" / "base_deepmd.pt"), D3Dispersion(gfn1_d3())])
    missing = {name: force_difference(reference, base, states) for name, states in sets.items()}
    out = []
    for form, strategy, term, config in forms():
        bound = best_correction_bound(term, sets, missing, fit_on=fit_on)
        landed = None if (config is None or args.smoke) else refined_residual(config, sets, missing)
        scales_only = [n for n, p in term.named_parameters() if p.requires_grad] in (["s6", "s8"],)
        path = refinement_path(config, term, sets, missing) if (config and scales_only and not args.smoke) else None
        out.append(FormBound(form, strategy, int(bound.parameters.size),
                             [round(float(x), 6) for x in bound.parameters] if bound.parameters.size <= 6 else [],
                             bound.missing_force_rms_meV_per_A, bound.residual_rms_meV_per_A,
                             None if landed is None else landed[0], None if landed is None else landed[1], path))
        for row in path or []:
            damping = "".join(f", {k} {row[k]:.3f}" for k in ("a1", "a2_bohr") if k in row)
            print(f"  {strategy} update {row['update']}: s6 {row['s6']:+.3f}, s8 {row['s8']:+.3f}{damping}, "
                  f"loss {row['loss']:.0f}: " + ", ".join(f"{k} {v:.1f}" for k, v in row["residual_rms_meV_per_A"].items())
                  + " meV/Å", flush=True)
        print(f"{form}: " + ", ".join(f"{k} {v:.1f}" for k, v in bound.residual_rms_meV_per_A.items())
              + " meV/Å", flush=True)
    table = markdown(out, list(sets))
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "correction_bounds_smoke" if args.smoke else "correction_bounds"
    (args.out / f"{stem}.json").write_text(json.dumps(
        {"fit_on": fit_on, "frames": {k: len(v) for k, v in sets.items()}, "forms": [asdict(b) for b in out]},
        indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(table + "\n")
    return out


if __name__ == "__main__":
    main()
