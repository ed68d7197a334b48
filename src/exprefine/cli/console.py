"""Plain-text tables the command line prints at the end of a run."""

from __future__ import annotations

import math

from ..refine import Evaluation, RefinementResult


def _value(evaluation: Evaluation, name: str) -> str:
    scalars = evaluation.scalars()
    if name in scalars:
        se = scalars[name]["standard_error"]
        return f"{scalars[name]['value']:.6g}" + ("" if math.isnan(se) else f" ± {se:.2g}")
    return ""


def targets_table(before: Evaluation, after: Evaluation | None, before_label: str = "before") -> str:
    """One row per target: RMSE (and a scalar's value ± standard error) before and after, and the ratio."""
    has_after = after is not None
    header = f"  {'target':<20}{'RMSE ' + before_label:>16}" + (f"{'RMSE after':>14}{'after/before':>14}" if has_after else "")
    lines = [header]
    for name, rmse in before.rmse.items():
        row = f"  {name:<20}{rmse:>16.5g}"
        if after is not None:
            a = after.rmse[name]
            row += f"{a:>14.5g}{(a / rmse if rmse > 0 else float('nan')):>14.3f}"
        lines.append(row)
        value_b = _value(before, name)
        if value_b:
            lines.append(f"  {'':<20}{'value ' + value_b:>16}" + (f"{'value ' + _value(after, name):>28}" if after else ""))
    return "\n".join(lines)


def parameters_table(before: dict[str, float], after: dict[str, float]) -> str:
    """One row per named parameter: start, end, relative change (empty when the potential names none)."""
    if not after:
        return ""
    lines = [f"  {'parameter':<28}{'start':>14}{'refined':>14}{'change':>12}"]
    for name, value in after.items():
        start = before.get(name, float("nan"))
        change = f"{100 * (value / start - 1):+.2f} %" if start not in (0.0,) and not math.isnan(start) else ""
        lines.append(f"  {name:<28}{start:>14.6g}{value:>14.6g} {change:>11}")  # a space even before -3338.21 %
    return "\n".join(lines)


def wall_time_text(result: RefinementResult) -> str:
    """``316 s`` or ``412 s in 2 sessions (resumed: 300 + 112 s)``."""
    segments = result.wall_time_segments_s
    if len(segments) <= 1:
        return f"{result.wall_time_s:.1f} s"
    return (f"{result.wall_time_s:.1f} s in {len(segments)} sessions "
            f"(resumed: {' + '.join(f'{s:.0f}' for s in segments)} s)")
