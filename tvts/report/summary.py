"""`summary.md`: the report's Markdown, section by section, from a `ReportData`."""
from __future__ import annotations

import datetime as dt

from tvts.compare import (MISSING, PERF, SECTION_LABELS, RowKey, Table, format_aggregate, format_metric, format_value,
                          paper_headers, row_sort_key, section_of)
from tvts.grid import Aggregate, aggregate, group_by_method, is_grid
from tvts.paper import CITATION, PAPER, TABLE4
from tvts.report.content import (CLASSIFICATION_PNG, METHODS_PNG, PRETRAIN_PNG, RETRIEVAL_PNG, Column,
                                 ReportData, comparison_columns, headline_table, method_cells, metric_label,
                                 missing_runs)


def _md_table(head: list[str], rows: list[list[str]], numeric: range | list[int]) -> list[str]:
    """A Markdown table; the columns in `numeric` are right-aligned."""
    align = ["---:" if i in numeric else "---" for i in range(len(head))]
    return [f"| {' | '.join(head)} |", f"| {' | '.join(align)} |", *(f"| {' | '.join(r)} |" for r in rows)]


def _headline_md(table: Table) -> list[str]:
    head = ["Evaluation", "Dataset", "Metric", *[f"`{e}`" for e in table.exps], *paper_headers(table)]
    rows = []
    for row in table.rows:
        cells = [format_metric(row.metric, table.value(row, e)) for e in table.exps] + table.paper_cells(row)
        rows.append([SECTION_LABELS.get(row.section, row.section), row.dataset, metric_label(row.metric), *cells])
    if not rows:
        return ["No headline metrics were logged by these experiments."]
    return _md_table(head, rows, range(3, len(head)))


def _paper_reference_md() -> list[str]:
    rows = [[p.label, p.dataset, metric_label(p.metric), format_metric(p.metric, p.value), p.best_other]
            for p in PAPER.values()]
    return _md_table(["Evaluation", "Dataset", "Metric", "TVTS (paper)", "Best other in paper"], rows, [3])


def _sort_md(data: ReportData) -> list[str]:
    """Transcript sorting with video (TVTS) against the text-only baseline: the gain is what video adds."""
    rows = []
    for exp in data.exps:
        tvts = [data.metric(exp, "pretrain", k) for k in ("val/sort_acc", "val/sort_exact")]
        text = [data.metric(exp, "text_only_baseline", k) for k in ("val/sort_acc", "val/sort_exact")]
        gain = tvts[1] - text[1] if tvts[1] is not None and text[1] is not None else None
        rows.append([f"`{exp}`", *map(format_value, tvts + text), MISSING if gain is None else f"{gain:+.4g}"])
    head = ["Experiment", "TVTS sort_acc", "TVTS sort_exact", "text-only sort_acc", "text-only sort_exact",
            "video gain (exact)"]
    return _md_table(head, rows, range(1, len(head)))


def _throughput_md(data: ReportData) -> list[str]:
    """One row per training run: samples/s per device (and its ratio to the first experiment's same
    stage), the data-wait share, step time, MFU, memory and device-hours."""
    runs = [r for r in data.latest if "perf/samples_per_s_per_device" in r.metrics]
    if not runs:
        return ["No training run logged telemetry."]
    runs.sort(key=lambda r: (row_sort_key(RowKey(section_of(r), r.dataset, "")), data.exps.index(r.exp)))
    first: dict[tuple[str, str], float] = {}
    rows = []
    for r in runs:
        m, key = r.metrics, (section_of(r), r.dataset)
        speed = m["perf/samples_per_s_per_device"]
        base = first.setdefault(key, speed)
        wait, mfu = m.get("perf/data_wait_share"), m.get("perf/mfu")
        rows.append([SECTION_LABELS.get(key[0], key[0]), key[1], f"`{r.exp}`", format_value(speed),
                     f"{speed / base:.2f}×" if base else MISSING, f"{100 * wait:.1f} %" if wait is not None else MISSING,
                     format_value(m.get("perf/step_time_p50_s")), format_value(m.get("perf/step_time_p99_s")),
                     f"{100 * mfu:.2f} %" if mfu is not None else MISSING, format_value(m.get("perf/peak_mem_gb")),
                     format_value(m.get("perf/device_hours"))])
    head = ["Stage", "Dataset", "Experiment", "samples/s per device", "vs first", "waiting for data",
            "step p50 (s)", "step p99 (s)", "MFU", "peak memory (GB)", "device-hours"]
    return _md_table(head, rows, range(3, len(head))) + [
        "", "MFU is against the device's measured matmul peak in the training dtype; on CPU the peak "
        "memory is the process's resident set. `vs first`: samples/s against the first experiment's same "
        f"stage. Metrics: {', '.join(f'`{k}`' for k in PERF)}.", ""]


def _runs_md(data: ReportData) -> list[str]:
    rows = []
    for run in sorted(data.latest, key=lambda r: (data.exps.index(r.exp),
                                                  row_sort_key(RowKey(section_of(r), r.dataset or r.part, "")))):
        started = dt.datetime.fromtimestamp(run.start_time / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
        rows.append([f"`{run.exp}`", run.stage, run.dataset or run.part, f"`{run.run_id}`", started,
                     "yes" if run.paper_config else "no"])
    return _md_table(["Experiment", "Stage", "Dataset", "Run id", "Started (UTC)", "Paper config"], rows, [])


def _methods_md(data: ReportData) -> list[str]:
    cols = comparison_columns(data)
    if not cols:
        return ["No evaluation runs yet."]
    cells = method_cells(data, cols)
    groups = group_by_method(data.exps)
    seeds = {m: len(es) for m, es in groups.items()}
    sort = {m: aggregate(data.metric(e, "pretrain", "val/sort_exact") for e in es) for m, es in groups.items()}
    head = ["Method", "seeds", *[c.label for c in cols], "pretrain val sort_exact"]
    rows = [[f"`{m}`", str(seeds[m]), *[format_aggregate(c.metric, cells[m][c]) for c in cols],
             format_aggregate("sort_exact", sort[m]) if sort[m] else MISSING] for m in cells]
    paper_rows = [[f"paper: {name}", "", *[format_metric(c.metric, v) if (v := vals.get((c.section, c.dataset,
                  c.metric))) is not None else "" for c in cols], ""] for name, vals in TABLE4.items()]
    lines = _md_table(head, rows + paper_rows, range(1, len(head)))
    lines += ["", "Mean ± sample standard deviation (ddof 1) over the seeds; every seed is shown, none is "
              "dropped. The `paper:` rows are the paper's Table 4 (ViT-B, 174 SSV2 classes, "
              "millions of videos) for orientation only: a demo-scale run is not comparable with them.", ""]
    return lines + _differences_md(cells, cols)


def _differences_md(cells: dict[str, dict[Column, Aggregate | None]], cols: list[Column]) -> list[str]:
    """TVTS against each other method: the gap of the means beside the larger seed spread."""
    if "tvts" not in cells:
        return []
    lines = []
    for other in (m for m in cells if m != "tvts"):
        parts = []
        for c in cols:
            a, b = cells["tvts"][c], cells[other][c]
            if a is None or b is None:
                continue
            gap, spread = a.mean - b.mean, max(a.std, b.std)
            verdict = ("within the seed spread" if abs(gap) <= spread
                       else ("TVTS ahead" if gap > 0 else "TVTS behind"))
            parts.append(f"{c.label} {gap:+.2f} (spread {spread:.2f}, {verdict})")
        if parts:
            lines.append(f"- `tvts` − `{other}`: " + "; ".join(parts))
    return (["Differences of the means, against the larger of the two seed standard deviations:", "", *lines, ""]
            if lines else [])


def render_summary(data: ReportData, skipped_curves: list[str]) -> str:
    lines = ["# TVTS results", "",
             f"Experiments {', '.join(f'`{e}`' for e in data.exps) or '(none)'}, from {data.where}. "
             "Each number is the latest FINISHED run of its stage or evaluation; failed, killed and "
             "running reruns are ignored. Retrieval and accuracy metrics are percentages.", ""]
    if not data.latest:
        lines += ["**No finished runs were found**, so there is nothing to compare yet; "
                  "the plots are placeholders.", ""]
    if is_grid(data.exps):
        lines += ["## Methods over seeds", "", *_methods_md(data), f"![Methods over seeds]({METHODS_PNG})", ""]
    lines += ["## Headline metrics", "", *_headline_md(headline_table(data)), ""]
    if data.show_paper:
        lines += [f"The `paper` column is the paper's number ({CITATION}), shown because at least one run "
                  "used the paper config; it is a reference, not a result of this project.", ""]
    else:
        lines += ["No shown run used the paper config, so the paper's numbers are not set beside these "
                  "results; they are listed for reference in [a separate table](#paper-reference).", ""]
    lines += ["## Transcript sorting: TVTS vs the text-only baseline", "", *_sort_md(data), ""]
    if not data.show_paper:
        lines += ["## Paper reference", "", f"{CITATION}.", "", *_paper_reference_md(), ""]
    lines += ["## Throughput: where the training time went", "", *_throughput_md(data), ""]
    lines += ["## Plots", "", f"![Pretraining curves]({PRETRAIN_PNG})", "",
              f"![Retrieval]({RETRIEVAL_PNG})", "", f"![Classification]({CLASSIFICATION_PNG})", ""]
    if skipped_curves:
        lines += [f"Not in `{PRETRAIN_PNG}` (no finished pretrain run): "
                  f"{', '.join(f'`{e}`' for e in skipped_curves)}.", ""]
    lines += ["## Runs", "", *(_runs_md(data) if data.latest else ["None."]), ""]
    missing = missing_runs(data)
    lines += ["## Missing runs", "", *([f"- {m}" for m in missing] or ["None."]), ""]
    return "\n".join(lines)
