"""One markdown report of a run directory, with its figures: ``exprefine report RUN_DIR``.

The report (``RUN_DIR/report/report.md`` and its PNG figures beside it; everything it shows is in
that folder) has: every target before/after against the data, drawn at the data's own points with
σ as error bars and the residuals below; the loss, N_eff/N, RMSE and parameter history with
rejected steps and rolled-back blow-ups marked; the parameters before/after; the held-out DFT
errors of a fused run; sample/evaluate runs beside it; wall time (per session of a resumed run),
hardware and package versions; the resolved configuration.

A study's own report can build on it: :func:`build_report` returns the sections, to which it adds
its own before :func:`render_markdown`.
"""

from __future__ import annotations

import base64
import math
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..data.metrics import DFTErrors
from ..refine.curves import TargetCurve
from ..refine.plots import plot_curves, plot_history
from .runs import RunRecord, read_runs

_TITLES = {"refine": "Refinement", "sample": "Sampling with the configured potential",
           "evaluate": "Evaluation of a checkpoint (fresh MD)", "evaluate_frames": "Evaluation of existing frames"}


@dataclass
class Section:
    """A heading (``level`` 2 = ``##``) and its markdown body."""

    title: str
    body: str
    level: int = 2


@dataclass
class Report:
    """A report: its title, sections and the figures drawn for it (in ``out_dir``)."""

    title: str
    out_dir: Path
    sections: list[Section] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)


def _g(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}g}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds:.0f} s ({seconds / 60:.1f} min)" if seconds < 7200 else f"{seconds:.0f} s ({seconds / 3600:.2f} h)"


def _targets_table(curves: list[TargetCurve]) -> str:
    labels = [m.label for m in curves[0].models] if curves else []
    header = ["target", "data", "points (in fit range)", "σ", "fit range"] + [f"RMSE {lab}" for lab in labels]
    if labels[:2] == ["before", "after"]:
        header.append("after / before")
    rows = []
    for c in curves:
        if c.is_scalar:
            data = f"{_g(c.measured_y[0], 6)}" + (f" ± {_g(c.measured_sigma[0], 2)}" if c.measured_sigma else "")
            row = [c.name, f"{data} {c.unit}", "1", "yes" if c.measured_sigma else "no", "–"]
        else:
            inside = sum(1 for x in c.measured_x if c.fit_range is not None and c.fit_range[0] <= x <= c.fit_range[1])
            source = Path(c.source).name if c.source else "(on the grid)"
            fit = f"{_g(c.fit_range[0])} – {_g(c.fit_range[1])}" if c.fit_range else "–"
            unit = c.grid_label.split("(")[-1].rstrip(")") if c.grid_label and "(" in c.grid_label else ""
            row = [c.name, f"`{source}`", f"{len(c.measured_x)} ({inside})", "yes" if c.measured_sigma else "no",
                   f"{fit} {unit}".strip()]
        row += [_g(m.rmse) for m in c.models]
        if labels[:2] == ["before", "after"]:
            b, a = c.models[0].rmse, c.models[1].rmse
            row.append(f"{a / b:.3f}" if b > 0 else "–")
        rows.append(row)
    return _table(header, rows)


def _scalar_lines(curves: list[TargetCurve]) -> str:
    lines = []
    for c in curves:
        if not c.is_scalar:
            continue
        parts = [f"{m.label} {_g(m.values[0], 6)} ± {_g(m.standard_errors[0], 2)}" for m in c.models]
        lines.append(f"* `{c.name}` ({c.quantity}, {c.unit}): measured {_g(c.measured_y[0], 6)}; " + "; ".join(parts))
    return "\n".join(lines)


def _figures(paths: list[Path], out_dir: Path) -> str:
    return "\n\n".join(f"![{p.stem}]({p.relative_to(out_dir).as_posix()})" for p in paths)


def _target_section(record: RunRecord, out_dir: Path, report: Report) -> str:
    if record.curves:
        figures = plot_curves(record.curves, out_dir, prefix=f"{record.kind}_target_")
        report.figures += figures
        parts = [_targets_table(record.curves), _scalar_lines(record.curves),
                 "Points: the data at their own abscissae (σ as error bars where the data give one); lines: "
                 "the models' ensemble averages, shaded by their block standard error; grey band: fit range; "
                 "lower panel: model − data at the data's points in the fit range (grey: ±σ).",
                 _figures(figures, out_dir)]
        return "\n\n".join(p for p in parts if p)
    old = sorted(record.folder.glob("target_*.png"))
    copies = []
    for path in old:
        copy = out_dir / f"{record.kind}_{path.name}"
        shutil.copyfile(path, copy)
        copies.append(copy)
    report.figures += copies
    return ("No `curves.json` in this run (made by an earlier exprefine): the run's own figures, which draw the "
            "data interpolated onto the model's grid.\n\n" + _figures(copies, out_dir))


def _history_section(record: RunRecord, out_dir: Path, report: Report) -> str:
    history = record.history
    if not history:
        return "No update log (`log.jsonl`)."
    path = out_dir / f"{record.kind}_history.png"
    summary = record.refine
    plot_history(history, path, final_loss=None if summary is None else summary.loss_after,
                 final_parameters=None if summary is None else summary.parameters)
    report.figures.append(path)
    rejected = [str(r.update) for r in history if not r.accepted]
    rolled = [f"{r.update} ({r.rollbacks})" for r in history if r.rollbacks]
    resampled = sum(r.resampled for r in history)
    lines = [f"{len(history)} updates (numbered from 0 as in `log.csv`); a new trajectory at {resampled} of them "
             f"(the others reweighted the last one). Open squares: the final check run's loss and the final parameters.",
             f"Steps rejected by the update rule (red crosses), at update: {', '.join(rejected) if rejected else 'none'}.",
             f"Samplings that blew up and were rolled back, at update (how many; dashed red lines): "
             f"{', '.join(rolled) if rolled else 'none'}."]
    return "\n".join(f"* {line}" for line in lines) + "\n\n" + _figures([path], out_dir)


def _parameters_section(before: dict[str, float], after: dict[str, float]) -> str:
    if not after:
        return "The potential names no scalar parameters (e.g. a neural network): see the model files in the run."
    rows = []
    for name, value in after.items():
        start = before.get(name, math.nan)
        change = f"{100 * (value / start - 1):+.2f} %" if start and not math.isnan(start) else "–"
        rows.append([f"`{name}`", _g(start, 6), _g(value, 6), change])
    return _table(["parameter", "start", "refined", "change"], rows)


def _dft_section(before: DFTErrors | None, after: DFTErrors | None) -> str:
    errors = [e for e in (before, after) if e is not None]
    ref = errors[0]
    labels = ["before", "after"] if before is not None and after is not None else ["before" if before else "after"]
    rows = [["energy RMSE", "meV/atom"] + [_g(e.energy_rmse_meV_per_atom) for e in errors],
            ["energy SD (mean removed)", "meV/atom"] + [_g(e.energy_sd_meV_per_atom) for e in errors],
            ["force RMSE", "meV/Å"] + [_g(e.force_rmse_meV_per_A) for e in errors]]
    for symbol in ref.force_rmse_by_element_meV_per_A:
        rows.append([f"force RMSE {symbol} ({ref.n_atoms_by_element.get(symbol, 0)} atoms)", "meV/Å"]
                    + [_g(e.force_rmse_by_element_meV_per_A.get(symbol)) for e in errors])
    if ref.stress_rmse_meV_per_A3 is not None:
        rows.append(["stress RMSE", "meV/Å³"] + [_g(e.stress_rmse_meV_per_A3) for e in errors])
    return (f"{ref.n_frames} held-out frames ({ref.n_atoms} atoms), never trained on.\n\n"
            + _table(["quantity", "unit"] + labels, rows))


def _refine_sections(record: RunRecord, out_dir: Path, report: Report) -> list[Section]:
    s = record.refine
    assert s is not None
    after = f" → {_g(s.loss_after)} (independent check run)" if s.loss_after is not None else " (no final check run)"
    extra = [f"{s.n_rejected_steps} step{'s' * (s.n_rejected_steps != 1)} rejected" if s.n_rejected_steps else "",
             f"{s.n_rollbacks} blow-up{'s' * (s.n_rollbacks != 1)} rolled back" if s.n_rollbacks else ""]
    rows = [["updates", f"{s.n_updates}" + (f" ({', '.join(e for e in extra if e)})" if any(extra) else "")],
            ["trajectories sampled", str(s.n_samplings)],
            ["loss", f"{_g(s.loss_before)}{after}"],
            ["wall time", _wall_time(s.wall_time_s, s.wall_time_segments_s)]]
    if s.final_check_note:
        rows.append(["note", s.final_check_note])
    sections = [Section(_TITLES["refine"], _table(["", ""], rows)),
                Section("Targets before and after", _target_section(record, out_dir, report), 3),
                Section("History", _history_section(record, out_dir, report), 3),
                Section("Parameters", _parameters_section(s.parameters_before, s.parameters), 3)]
    if s.dft_before is not None or s.dft_after is not None:
        sections.append(Section("Held-out reference (DFT) frames", _dft_section(s.dft_before, s.dft_after), 3))
    return sections


def _wall_time(total_s: float, segments_s: list[float]) -> str:
    if len(segments_s) <= 1:
        return _duration(total_s)
    return (f"{_duration(total_s)} in {len(segments_s)} sessions (resumed; "
            f"{' + '.join(f'{t:.0f}' for t in segments_s)} s, each counted to its last checkpoint)")


def _sampled_sections(record: RunRecord, out_dir: Path, report: Report) -> list[Section]:
    s = record.sampled
    assert s is not None
    rows = [["folder", f"`{record.folder.name}/`"], ["frames", str(s.n_frames)],
            ["wall time (MD)", _duration(s.wall_time_s)], ["loss", _g(s.loss)]]
    if s.frames_file:
        rows.append(["frames from", f"`{s.frames_file}`"])
    if s.sampled_with is not None and s.ess_fraction is not None:
        rows.append(["reweighted", f"sampled with `{s.sampled_with}`; N_eff/N = {s.ess_fraction:.3f}"])
    return [Section(_TITLES[record.kind], _table(["", ""], rows)),
            Section("Targets", _target_section(record, out_dir, report), 3)]


def _provenance_section(runs: list[RunRecord]) -> str:
    blocks = []
    for record in runs:
        if not record.sessions:
            versions = ", ".join(f"{k} {v}" for k, v in record.checkpoint_versions.items()) or "not recorded"
            blocks.append(f"**{record.kind}**: hardware not recorded (run made by an earlier exprefine); "
                          f"versions: {versions}.")
            continue
        rows = []
        for k, info in enumerate(record.sessions):
            rows.append([str(k + 1), info.started, f"`{info.command}`", f"{info.cpu} ({info.n_cpus} CPUs)",
                         str(info.torch_threads), info.device])
        versions = ", ".join(f"{k} {v}" for k, v in record.sessions[-1].versions.items())
        blocks.append(f"**{record.kind}** ({record.sessions[-1].system})\n\n"
                      + _table(["session", "started", "command", "CPU", "torch threads", "device"], rows)
                      + f"\n\nVersions: {versions}.")
    return "\n\n".join(blocks)


def build_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Report:
    """The sections of the report of ``run_dir`` (see the module documentation); figures drawn into
    ``out_dir`` (default ``run_dir/report``)."""
    run_dir = Path(run_dir)
    runs = read_runs(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    report = Report(title=f"exprefine report: {run_dir.resolve().name}", out_dir=out)
    kinds = ", ".join(_TITLES[r.kind].lower() for r in runs)
    report.sections.append(Section("Contents", f"`{run_dir}`: {kinds}. Written {time.strftime('%Y-%m-%d %H:%M')} "
                                               f"by exprefine {__version__}."))
    for record in runs:
        if record.kind == "refine":
            report.sections += _refine_sections(record, out, report)
        else:
            report.sections += _sampled_sections(record, out, report)
    report.sections.append(Section("Wall time, hardware and versions", _provenance_section(runs)))
    for record in runs:
        if record.config_text:
            report.sections.append(Section(
                f"Configuration ({record.kind})",
                f"<details><summary>resolved config.yaml (paths relative to `{record.folder.name}/`)</summary>\n\n"
                f"```yaml\n{record.config_text.rstrip()}\n```\n\n</details>", 3))
    return report


def render_markdown(report: Report, embed: bool = False) -> str:
    """The report as markdown; ``embed`` puts the PNG figures inside as base64 data URIs."""
    text = f"# {report.title}\n\n" + "\n\n".join(f"{'#' * s.level} {s.title}\n\n{s.body}" for s in report.sections) + "\n"
    if not embed:
        return text

    def inline(match: re.Match) -> str:
        data = base64.b64encode((report.out_dir / match.group(2)).read_bytes()).decode()
        return f"![{match.group(1)}](data:image/png;base64,{data})"

    return re.sub(r"!\[([^\]]*)\]\(([^)]+\.png)\)", inline, text)


def write_report(run_dir: str | Path, out_dir: str | Path | None = None, embed: bool = False) -> Path:
    """Write ``report.md`` (and its figures) for ``run_dir``; the path of ``report.md``."""
    report = build_report(run_dir, out_dir)
    path = report.out_dir / "report.md"
    path.write_text(render_markdown(report, embed=embed))
    return path
