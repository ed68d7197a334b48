"""Reports of finished runs: ``exprefine report RUN_DIR`` (markdown with figures)."""

from .markdown import Report, Section, build_report, render_markdown, write_report
from .runs import RefineSummary, RunRecord, SampledSummary, read_runs

__all__ = ["RefineSummary", "Report", "RunRecord", "SampledSummary", "Section", "build_report", "read_runs",
           "render_markdown", "write_report"]
