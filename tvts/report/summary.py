"""`summary.md`: the report's Markdown, section by section, from a `ReportData`."""
from __future__ import annotations

import datetime as dt

from tvts.compare import (CONTROLS, FLOOR, MISSING, PERF, PIXELS, SECTION_LABELS, UPPER_BOUND_TEXT, UPPER_BOUNDS,
                          RowKey, Table, upper_bound,
                          format_aggregate, format_metric, format_value, paper_headers, row_sort_key, section_of)
from tvts.grid import Aggregate, aggregate, group_by_method, is_grid
from tvts.paper import CITATION, PAPER, TABLE4
from tvts.report.content import (CLASSIFICATION_PNG, METHODS_PNG, PRETRAIN_PNG, RETRIEVAL_PNG, TEMPORAL_PNG,
                                 HEALTH_COLUMNS, Check, Column, ReportData, chance, health_rows,
                                 comparison_columns, headline_table, instrument_checks, method_cells,
                                 method_intervals, metric_label, missing_runs)
from tvts.stats import Interval

# Sections of the headline table that are training internals, not evaluations: their own table.
INTERNAL_SECTIONS = ("pretrain", "text_only_baseline", "select_ckpt", "post_pretrain")


def _md_table(head: list[str], rows: list[list[str]], numeric: range | list[int]) -> list[str]:
    """A Markdown table; the columns in `numeric` are right-aligned."""
    align = ["---:" if i in numeric else "---" for i in range(len(head))]
    return [f"| {' | '.join(head)} |", f"| {' | '.join(align)} |", *(f"| {' | '.join(r)} |" for r in rows)]


def _headline_md(table: Table, data: ReportData | None = None, internals: bool = False) -> list[str]:
    """The evaluations (internals False), each beside its chance level, or the training internals."""
    keep = [r for r in table.rows if (r.section in INTERNAL_SECTIONS) == internals]
    head = ["Evaluation" if not internals else "Stage", "Dataset", "Metric", *(["chance"] if not internals else []),
            *[f"`{e}`" for e in table.exps], *paper_headers(table)]
    rows = []
    for row in keep:
        level = [] if internals else [next((format_metric(row.metric, c) for e in table.exps
                                            if (c := chance(data, row, e)) is not None), "")] if data else [""]
        cells = [format_metric(row.metric, table.value(row, e)) for e in table.exps] + table.paper_cells(row)
        rows.append([SECTION_LABELS.get(row.section, row.section), row.dataset, metric_label(row.metric), *level,
                     *cells])
    if not rows:
        return ["No such metrics were logged by these experiments."]
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


def _health_cell(key: str, agg: Aggregate | None) -> str:
    """A share to 3 decimals (0.000 is a collapsed feature), a rank or an accuracy to 1."""
    if agg is None:
        return MISSING
    fmt = "{:.3f}" if key == "centred_share" else "{:.1f}"
    return fmt.format(agg.mean) + (f" ± {fmt.format(agg.std)}" if agg.n > 1 else "")


def _health_md(data: ReportData) -> list[str]:
    """The feature health of every evaluated encoder per readout: a diagnostic, not a verdict."""
    rows = health_rows(data)
    if not rows:
        return ["No evaluation logged feature health."]
    grid = is_grid(data.exps)
    head = ["Method" if grid else "Experiment", *(["seeds"] if grid else []), "Readout", "Dataset",
            *[label for label, _, _ in HEALTH_COLUMNS]]
    body = [[f"`{r.name}`", *([str(r.seeds)] if grid else []), r.readout, r.dataset,
             *[_health_cell(key, a) for (_, _, key), a in zip(HEALTH_COLUMNS, r.cells)]] for r in rows]
    numeric = [i for i, h in enumerate(head) if h == "seeds" or i >= len(head) - len(HEALTH_COLUMNS)]
    return _md_table(head, body, numeric) + [
        "", "Effective rank: how many directions the frozen training features vary along (exp of the "
        "entropy of the covariance's eigenvalues; at most the feature's width, 128 for this encoder; the "
        "attentive probe's is over its tokens). Centred share: their variance over their mean squared norm (near 0: every clip "
        "maps to nearly one vector). The probe's accuracy on its own training clips beside its test "
        "accuracy: a probe that cannot fit its training clips says the readout, not generalisation, is the "
        "bottleneck. Mean ± standard deviation over seeds (tvts/eval/health.py).", ""]


def _runs_md(data: ReportData) -> list[str]:
    rows = []
    for run in sorted(data.latest, key=lambda r: (data.exps.index(r.exp),
                                                  row_sort_key(RowKey(section_of(r), r.dataset or r.part, "")))):
        started = dt.datetime.fromtimestamp(run.start_time / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
        rows.append([f"`{run.exp}`", run.stage, run.dataset or run.part, f"`{run.run_id}`", started,
                     "yes" if run.paper_config else "no"])
    return _md_table(["Experiment", "Stage", "Dataset", "Run id", "Started (UTC)", "Paper config"], rows, [])


def _cell(metric: str, agg: Aggregate | None, interval: Interval | None) -> str:
    text = format_aggregate(metric, agg)
    return text if interval is None or interval.lo != interval.lo else f"{text} [{interval.lo:.1f}, {interval.hi:.1f}]"


def _methods_md(data: ReportData) -> list[str]:
    cols = comparison_columns(data)
    if not cols:
        return ["No evaluation runs yet."]
    cells = method_cells(data, cols)
    means, diffs = method_intervals(data, cols)
    groups = group_by_method(data.exps)
    seeds = {m: len(es) for m, es in groups.items()}
    sort = {m: aggregate(data.metric(e, "pretrain", "val/sort_exact") for e in es) for m, es in groups.items()}
    head = ["Method", "seeds", *[c.label for c in cols], "pretrain val sort_exact"]
    rows = [[f"`{m}`", str(seeds[m]), *[_cell(c.metric, cells[m][c], means.get(m, {}).get(c)) for c in cols],
             format_aggregate("sort_exact", sort[m]) if sort[m] else MISSING] for m in cells]
    paper_rows = [[f"paper: {name}", "", *[format_metric(c.metric, v) if (v := vals.get((c.section, c.dataset,
                  c.metric))) is not None else "" for c in cols], ""] for name, vals in TABLE4.items()]
    lines = _md_table(head, rows + paper_rows, range(1, len(head)))
    lines += ["", "Mean ± sample standard deviation (ddof 1) over the seeds, and in brackets the 95 % bootstrap "
              "interval over test clips where the evaluation wrote per-clip hits; every seed is shown, none is "
              "dropped. The `paper:` rows are the paper's Table 4 (ViT-B, 174 SSV2 classes, "
              "millions of videos) for orientation only: a demo-scale run is not comparable with them.", ""]
    checks = instrument_checks(data, cols)
    return (lines + _instrument_md(checks, cols, upper_bound(groups)) + _paired_md(diffs, cols, checks)
            + _differences_md(cells, cols, diffs))


def _instrument_md(checks: dict[Column, Check], cols: list[Column], upper: str) -> list[str]:
    """The positive controls per metric: the upper bound (`upper`) against the floor, the pixel probe against chance."""
    rows = [[c.label, f"{k.upper.value:+.2f} [{k.upper.lo:.2f}, {k.upper.hi:.2f}] {k.upper.verdict()}",
             f"{k.pixels.value:.1f} [{k.pixels.lo:.1f}, {k.pixels.hi:.1f}]", f"{k.chance:.1f}",
             "**yes**" if k.passed else "**no**"]
            for c in cols if (k := checks[c]).passed is not None]
    if not rows:
        return [f"No instrument check: the grid lacks a control (`{' or '.join(UPPER_BOUNDS)}`, `{PIXELS}` and "
                f"`{FLOOR}` with per-clip hits), so the verdicts below are marked unchecked.", ""]
    head = ["Metric", f"`{upper}` − `{FLOOR}`, 95 % interval", f"`{PIXELS}`, 95 % interval", "chance",
            "the instrument sees order"]
    return ["### The instrument check (positive controls)", "", *_md_table(head, rows, [1, 2, 3]), "",
            f"Pre-registered gate: a verdict counts only on a metric where the upper bound (`{upper}`: "
            f"{UPPER_BOUND_TEXT[upper]}) is ahead of `{FLOOR}` and the pixel probe (`{PIXELS}`: a weightless "
            "pixel feature) is above chance; elsewhere the verdict is \"not measurable\".", ""]


def _paired_md(diffs: dict[str, dict[Column, Interval]], cols: list[Column],
               checks: dict[Column, Check]) -> list[str]:
    """`tvts − method` paired by seed with its 95 % interval over test clips and the pre-registered
    verdict, gated by the instrument check; the controls are not hypotheses and have no row."""
    rows = [[f"`tvts` − `{m}`", c.label, f"{d.value:+.2f}", f"[{d.lo:.2f}, {d.hi:.2f}]",
             f"**{checks[c].verdict(d)}**"]
            for m, by_col in diffs.items() if m not in CONTROLS for c in cols if (d := by_col.get(c)) is not None]
    if not rows:
        return []
    return ["### TVTS against each method, paired by seed", "",
            *_md_table(["Difference", "Metric", "points", "95 % interval", "verdict"], rows, [2, 3]), "",
            "Paired by seed (same inits, data and data order), bootstrapped over the test clips (10,000 "
            "replicates); ahead / behind when the interval excludes 0, \"not measurable\" where the instrument "
            "check fails (docs/results.md, \"Pre-registered\").", ""]


def _differences_md(cells: dict[str, dict[Column, Aggregate | None]], cols: list[Column],
                    paired: dict[str, dict[Column, Interval]] | None = None) -> list[str]:
    """TVTS against each other method where no paired interval exists: the gap of the means beside the
    larger seed spread."""
    if "tvts" not in cells:
        return []
    lines = []
    for other in (m for m in cells if m != "tvts"):
        parts = []
        for c in cols:
            a, b = cells["tvts"][c], cells[other][c]
            if a is None or b is None or c in (paired or {}).get(other, {}):
                continue
            gap, spread = a.mean - b.mean, max(a.std, b.std)
            verdict = ("within the seed spread" if abs(gap) <= spread
                       else ("TVTS ahead" if gap > 0 else "TVTS behind"))
            parts.append(f"{c.label} {gap:+.2f} (spread {spread:.2f}, {verdict})")
        if parts:
            lines.append(f"- `tvts` − `{other}`: " + "; ".join(parts))
    return (["Without per-clip hits, differences of the means against the larger of the two seed standard "
             "deviations:", "", *lines, ""] if lines else [])


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
    table = headline_table(data)
    lines += ["## Evaluations", "", *_headline_md(table, data), ""]
    if data.show_paper:
        lines += [f"The `paper` column is the paper's number ({CITATION}), shown because at least one run "
                  "used the paper config; it is a reference, not a result of this project.", ""]
    else:
        lines += ["No shown run used the paper config, so the paper's numbers are not set beside these "
                  "results; they are listed for reference in [a separate table](#paper-reference).", ""]
    lines += ["## Feature health of the frozen features", "", *_health_md(data), ""]
    lines += ["## Training and selection internals", "", *_headline_md(table, internals=True), ""]
    lines += ["## Transcript sorting: TVTS vs the text-only baseline", "", *_sort_md(data), ""]
    if not data.show_paper:
        lines += ["## Paper reference", "", f"{CITATION}.", "", *_paper_reference_md(), ""]
    lines += ["## Throughput: where the training time went", "", *_throughput_md(data), ""]
    lines += ["## Plots", "", f"![Pretraining curves]({PRETRAIN_PNG})", "",
              f"![Retrieval]({RETRIEVAL_PNG})", "", f"![Classification]({CLASSIFICATION_PNG})", "",
              f"![Temporal-order probes]({TEMPORAL_PNG})", ""]
    if skipped_curves:
        lines += [f"Not in `{PRETRAIN_PNG}` (no finished pretrain run): "
                  f"{', '.join(f'`{e}`' for e in skipped_curves)}.", ""]
    lines += ["## Runs", "", *(_runs_md(data) if data.latest else ["None."]), ""]
    missing = missing_runs(data)
    lines += ["## Missing runs", "", *([f"- {m}" for m in missing] or ["None."]), ""]
    return "\n".join(lines)
