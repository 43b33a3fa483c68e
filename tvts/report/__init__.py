"""The report: `summary.md` and five plots of every experiment's runs, side by side.

Each number is the latest FINISHED run of its stage or evaluation. The paper's numbers
become a column only when a shown run used the paper config; otherwise they sit in a
separate reference table, since a demo-scale run is not comparable with them.
The output file names are fixed: the Snakemake rule declares them.

    content   what the report shows (`ReportData`, `collect`) and the selections it shares
    summary   the Markdown of summary.md
    page      summary.html: that Markdown as a standalone page, the plots embedded
    plots     the PNGs
"""
from __future__ import annotations

from pathlib import Path

from tvts import io
from tvts.grid import is_grid
from tvts.report.content import (CLASSIFICATION_PNG, HEALTH_COLUMNS, METHODS_PNG, PLOTS, PRETRAIN_PNG, RETRIEVAL_PNG,
                                 SUMMARY, SUMMARY_HTML, TEMPORAL_PNG, ReportData, collect, comparison_columns,
                                 headline_table, health_rows, method_cells, missing_runs)
from tvts.report.page import render_html
from tvts.report.plots import plot_classification, plot_methods, plot_pretrain, plot_retrieval, plot_temporal
from tvts.report.summary import render_summary

__all__ = ["CLASSIFICATION_PNG", "METHODS_PNG", "PLOTS", "PRETRAIN_PNG", "RETRIEVAL_PNG", "SUMMARY", "SUMMARY_HTML",
           "TEMPORAL_PNG",
           "ReportData", "as_json", "collect", "render_summary", "write_report"]


def as_json(data: ReportData, skipped_curves: list[str]) -> dict:
    """The report's content as plain data (for tests and scripts)."""
    table = headline_table(data)
    rows = [{"section": r.section, "dataset": r.dataset, "metric": r.metric,
             "values": {e: table.value(r, e) for e in table.exps}, "paper": table.paper(r),
             "paper_post": table.paper_post(r)} for r in table.rows]
    runs = [{"exp": r.exp, "stage": r.stage, "task": r.task, "dataset": r.dataset, "part": r.part,
             "run_id": r.run_id, "status": r.status, "paper_config": r.paper_config} for r in data.latest]
    return {"exps": data.exps, "where": data.where, "show_paper": data.show_paper, "empty": not data.latest,
            "methods": _methods_json(data), "health": _health_json(data),
            "headline": rows, "runs": runs, "missing": missing_runs(data), "skipped_curves": skipped_curves,
            "plots": list(PLOTS), "summary": SUMMARY, "summary_html": SUMMARY_HTML}


def _methods_json(data: ReportData) -> dict:
    """method -> column label -> mean/std/n/values over its seeds; {} when the experiments are no grid."""
    if not is_grid(data.exps):
        return {}
    cols = comparison_columns(data)
    return {m: {c.label: (None if a is None else {"mean": a.mean, "std": a.std, "n": a.n, "values": a.values})
                for c, a in row.items()} for m, row in method_cells(data, cols).items()}


def _health_json(data: ReportData) -> list[dict]:
    """One entry per method (or experiment) and readout: each health column's mean/std/n over seeds."""
    return [{"name": r.name, "readout": r.readout, "dataset": r.dataset} | {
        key: (None if a is None else {"mean": a.mean, "std": a.std, "n": a.n})
        for (_, _, key), a in zip(HEALTH_COLUMNS, r.cells)} for r in health_rows(data)]


def write_report(data: ReportData, out: str | Path) -> dict:
    """Write summary.md, summary.html and the plots under `out` (each atomically). Returns `as_json`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    empty_text = "no runs" if not data.latest else None
    skipped = plot_pretrain(data, out / PRETRAIN_PNG, empty_text or "no pretrain runs")
    plot_retrieval(data, out / RETRIEVAL_PNG, empty_text or "no retrieval runs")
    plot_classification(data, out / CLASSIFICATION_PNG, empty_text or "no classification runs")
    plot_methods(data, out / METHODS_PNG, empty_text or "no methods x seeds grid in these experiments")
    plot_temporal(data, out / TEMPORAL_PNG, empty_text or "no temporal-order probe runs")
    summary = render_summary(data, skipped)
    io.atomic_write_text(out / SUMMARY, summary)
    io.atomic_write_text(out / SUMMARY_HTML, render_html(summary, out))
    return as_json(data, skipped)
