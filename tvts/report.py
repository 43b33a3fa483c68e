"""The report: `summary.md` and three plots of every experiment's runs, side by side.

Each number is the latest FINISHED run of its stage or evaluation. The paper's numbers
become a column only when a shown run used the paper config; otherwise they sit in a
separate reference table, since a demo-scale run is not comparable with them.
The output file names are fixed: the Snakemake rule declares them.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from tvts import io, tracking
from tvts.compare import (MISSING, SECTION_LABELS, RowKey, Table, build_table, format_aggregate, format_metric,
                          format_value, row_sort_key, section_of)
from tvts.grid import Aggregate, aggregate, group_by_method, is_grid
from tvts.paper import CITATION, PAPER, TABLE4, paper_value
from tvts.tracking import RunRecord

SUMMARY = "summary.md"
PRETRAIN_PNG = "pretrain_curves.png"
RETRIEVAL_PNG = "retrieval.png"
CLASSIFICATION_PNG = "classification.png"
METHODS_PNG = "methods.png"
PLOTS = (PRETRAIN_PNG, RETRIEVAL_PNG, CLASSIFICATION_PNG, METHODS_PNG)
# The methods x seeds comparison (issue 6): (task, metric), on the first dataset each task has.
COMPARISON = (("linear", "top1"), ("zeroshot_v2v", "r1"), ("zeroshot_v2v", "r5"), ("zeroshot_v2v", "r10"),
              ("finetune", "top1"), ("t2v", "zeroshot/r1"), ("t2v", "finetuned/r1"))
_SHORT = {"linear": "linear", "zeroshot_v2v": "ZS V2V", "finetune": "fine-tune", "t2v": "T2V"}
CURVES = ("train/loss_sort", "val/sort_exact")
# Stages every experiment is expected to have; the evaluations are expected where another shown
# experiment has them (an experiment is "missing" what its neighbours have).
CORE_STAGES = ("pretrain", "select_ckpt")
_RETRIEVAL = ("r1", "r5", "r10")


@dataclass
class ReportData:
    """What the report shows, read from the store once."""

    exps: list[str]
    records: list[RunRecord]  # every run of these experiments, any status, newest first
    latest: list[RunRecord]  # the run that counts per stage/evaluation
    where: str
    curves: dict[str, dict[str, list[tuple[int, float]]]] = field(default_factory=dict)

    @property
    def show_paper(self) -> bool:
        return any(r.paper_config for r in self.latest)

    def run(self, exp: str, section: str, dataset: str = "") -> RunRecord | None:
        return next((r for r in self.latest if r.exp == exp and section_of(r) == section
                     and r.dataset == dataset), None)

    def metric(self, exp: str, section: str, metric: str, dataset: str = "") -> float | None:
        run = self.run(exp, section, dataset)
        return run.metrics.get(metric) if run else None


def collect(exps: list[str] | None, experiment: str | None = None, uri: str | None = None) -> ReportData:
    """Read the runs of `exps` (None: every experiment in the store) and their training curves."""
    uri = uri or tracking.tracking_uri()
    experiment = experiment or tracking.experiment_name()
    exps = list(dict.fromkeys(exps)) if exps else tracking.list_exps(experiment, uri)
    records = tracking.search_stage_runs(exps, None, experiment, uri)
    data = ReportData(exps, records, tracking.pick_latest(records), f"MLflow experiment `{experiment}` at `{uri}`")
    for exp in exps:
        for stage in ("pretrain", "text_only_baseline"):
            if run := data.run(exp, stage):
                data.curves[f"{exp}/{stage}"] = {k: tracking.metric_history(run.run_id, k, uri) for k in CURVES}
    return data


# ---------------------------------------------------------------------------------------
# What is missing


def missing_runs(data: ReportData) -> list[str]:
    """One line per experiment and expected stage/evaluation that has no finished run."""
    expected = {(s, "") for s in CORE_STAGES}
    expected |= {(section_of(r), r.dataset) for r in data.latest if not r.part}
    lines = []
    for exp in data.exps:
        if not any(r.exp == exp for r in data.records):
            lines.append(f"`{exp}`: no runs at all")
            continue
        for section, dataset in sorted(expected, key=lambda k: row_sort_key(RowKey(k[0], k[1], ""))):
            if data.run(exp, section, dataset):
                continue
            name = f"{section}/{dataset}" if dataset else section
            tried = sorted({r.status for r in data.records if r.exp == exp and section_of(r) == section
                            and r.dataset == dataset})
            lines.append(f"`{exp}`: {name}" + (f" (only {', '.join(tried)} runs)" if tried else ""))
    return lines


# ---------------------------------------------------------------------------------------
# summary.md


_METRIC_NAMES = {"r1": "R@1", "r5": "R@5", "r10": "R@10", "medr": "MedR", "top1": "top-1", "top5": "top-5"}
_PHASES = {"finetuned": "fine-tuned", "zeroshot": "zero-shot", "": ""}


def metric_label(metric: str) -> str:
    """'finetuned/r1' -> 'fine-tuned R@1'; keys without a paper name stay as logged ('val/sort_exact')."""
    phase, _, name = metric.rpartition("/")
    if name not in _METRIC_NAMES or phase not in _PHASES:
        return metric
    return f"{_PHASES[phase]} {_METRIC_NAMES[name]}".strip()


def _md_table(head: list[str], rows: list[list[str]], numeric: range | list[int]) -> list[str]:
    """A Markdown table; the columns in `numeric` are right-aligned."""
    align = ["---:" if i in numeric else "---" for i in range(len(head))]
    return [f"| {' | '.join(head)} |", f"| {' | '.join(align)} |", *(f"| {' | '.join(r)} |" for r in rows)]


def headline_table(data: ReportData) -> Table:
    runs = [r for r in data.latest if not r.part]
    return build_table(runs, data.exps, headline_only=True, show_paper=data.show_paper,
                       paper_rows=data.show_paper)


def _headline_md(table: Table) -> list[str]:
    head = ["Evaluation", "Dataset", "Metric", *[f"`{e}`" for e in table.exps]]
    head += ["paper"] if table.show_paper else []
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


def _runs_md(data: ReportData) -> list[str]:
    rows = []
    for run in sorted(data.latest, key=lambda r: (data.exps.index(r.exp),
                                                  row_sort_key(RowKey(section_of(r), r.dataset or r.part, "")))):
        started = dt.datetime.fromtimestamp(run.start_time / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
        rows.append([f"`{run.exp}`", run.stage, run.dataset or run.part, f"`{run.run_id}`", started,
                     "yes" if run.paper_config else "no"])
    return _md_table(["Experiment", "Stage", "Dataset", "Run id", "Started (UTC)", "Paper config"], rows, [])


@dataclass(frozen=True)
class Column:
    """One metric of the methods comparison."""

    section: str
    dataset: str
    metric: str

    @property
    def label(self) -> str:
        return f"{_SHORT.get(self.section, self.section)} {metric_label(self.metric)} ({self.dataset})"


def comparison_columns(data: ReportData) -> list[Column]:
    """The comparison's metrics that some run has, each on the first dataset of its task."""
    cols = []
    for section, metric in COMPARISON:
        datasets = _datasets(data, section)
        if datasets:
            cols.append(Column(section, datasets[0], metric))
    return cols


def method_cells(data: ReportData, cols: list[Column]) -> dict[str, dict[Column, Aggregate | None]]:
    """method -> column -> mean/std/n over that method's seeds (experiments `<method>-s<seed>`)."""
    groups = group_by_method(data.exps)
    return {m: {c: aggregate(data.metric(e, c.section, c.metric, c.dataset) for e in exps) for c in cols}
            for m, exps in groups.items()}


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
    lines += ["## Plots", "", f"![Pretraining curves]({PRETRAIN_PNG})", "",
              f"![Retrieval]({RETRIEVAL_PNG})", "", f"![Classification]({CLASSIFICATION_PNG})", ""]
    if skipped_curves:
        lines += [f"Not in `{PRETRAIN_PNG}` (no finished pretrain run): "
                  f"{', '.join(f'`{e}`' for e in skipped_curves)}.", ""]
    lines += ["## Runs", "", *(_runs_md(data) if data.latest else ["None."]), ""]
    missing = missing_runs(data)
    lines += ["## Missing runs", "", *([f"- {m}" for m in missing] or ["None."]), ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Plots (matplotlib's object API on the Agg canvas: no pyplot state, no display needed)


def _figure(ncols: int, nrows: int = 1, width: float = 4.2, height: float = 3.4):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    return fig, axes


def _save(fig, path: Path) -> None:
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def _placeholder(path: Path, text: str) -> None:
    fig, (ax,) = _figure(1, width=5, height=2.5)
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=14, transform=ax.transAxes)
    _save(fig, path)


def _colors(exps: list[str]) -> dict[str, str]:
    return {e: f"C{i % 10}" for i, e in enumerate(exps)}


def plot_pretrain(data: ReportData, path: Path, empty_text: str) -> list[str]:
    """train/loss_sort and val/sort_exact against the step, one colour per experiment; the
    text-only baseline dashed. Returns the experiments skipped (no pretrain run)."""
    shown = [e for e in data.exps if f"{e}/pretrain" in data.curves]
    if not shown:
        _placeholder(path, empty_text)
        return list(data.exps)
    fig, axes = _figure(len(CURVES))
    color = _colors(data.exps)
    for ax, key in zip(axes, CURVES):
        for exp in data.exps:
            for stage, style, suffix in (("pretrain", "-", ""), ("text_only_baseline", "--", " (text only)")):
                points = data.curves.get(f"{exp}/{stage}", {}).get(key, [])
                if points:
                    steps, values = zip(*points)
                    ax.plot(steps, values, style, color=color[exp], marker="o" if key.startswith("val/") else None,
                            markersize=3, label=f"{exp}{suffix}")
        ax.set(title=key, xlabel="step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
        else:  # e.g. only VideoMAE runs, which log no sort metrics
            ax.text(0.5, 0.5, f"no run logged {key}", ha="center", va="center", transform=ax.transAxes)
    _save(fig, path)
    return [e for e in data.exps if e not in shown]


def _bars(ax, groups: list[str], series: dict[str, list[float | None]], colors: dict[str, str]) -> None:
    """Grouped bars: one group per entry of `groups`, one bar per series (missing values left out)."""
    keep = [i for i in range(len(groups)) if any(v[i] is not None for v in series.values())]
    groups = [groups[i] for i in keep]
    series = {name: [values[i] for i in keep] for name, values in series.items()}
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g, v in enumerate(values) if v is not None]
        ys = [v for v in values if v is not None]
        if not ys:
            continue
        hatch = "//" if name == "paper" else None
        bars = ax.bar(xs, ys, width, label=name, color=colors.get(name, "0.75"), hatch=hatch, edgecolor="0.3")
        ax.bar_label(bars, fmt="%.1f", fontsize=6)
    ax.set_xticks(range(len(groups)), groups)
    ax.grid(axis="y", alpha=0.3)


def _series(data: ReportData, section: str, dataset_metric: list[tuple[str, str]]) -> dict[str, list]:
    series = {e: [data.metric(e, section, m, d) for d, m in dataset_metric] for e in data.exps}
    if data.show_paper:
        series["paper"] = [paper_value(section, d, m) for d, m in dataset_metric]
    return {k: v for k, v in series.items() if any(x is not None for x in v)}


def _datasets(data: ReportData, section: str) -> list[str]:
    found = {r.dataset for r in data.latest if section_of(r) == section and r.dataset}
    return sorted(found, key=lambda d: row_sort_key(RowKey(section, d, "")))


def plot_retrieval(data: ReportData, path: Path, empty_text: str) -> None:
    """R@1/5/10 bars per experiment: zero-shot V2V, and T2V zero-shot and fine-tuned, per dataset."""
    panels = []  # (title, section, dataset, metric prefix)
    panels += [(f"zero-shot V2V, {d}", "zeroshot_v2v", d, "") for d in _datasets(data, "zeroshot_v2v")]
    for d in _datasets(data, "t2v"):
        panels += [(f"T2V {_PHASES[phase]}, {d}", "t2v", d, f"{phase}/") for phase in ("zeroshot", "finetuned")]
    filled = []
    for title, section, d, prefix in panels:
        series = _series(data, section, [(d, prefix + m) for m in _RETRIEVAL])
        if series:
            filled.append((title, series))
    if not filled:
        _placeholder(path, empty_text)
        return
    cols = min(len(filled), 3)
    fig, axes = _figure(cols, (len(filled) + cols - 1) // cols)
    for ax, (title, series) in zip(axes, filled):
        _bars(ax, ["R@1", "R@5", "R@10"], series, _colors(data.exps))
        ax.set(title=title, ylabel="%")
        ax.legend(fontsize=7)
    for ax in axes[len(filled):]:
        ax.axis("off")
    _save(fig, path)


def plot_classification(data: ReportData, path: Path, empty_text: str) -> None:
    """Top-1 bars per dataset, one per experiment: linear probe and fine-tune."""
    filled = []
    for title, section in (("linear probe top-1", "linear"), ("fine-tune top-1", "finetune")):
        datasets = _datasets(data, section)
        series = _series(data, section, [(d, "top1") for d in datasets])
        if series:
            filled.append((title, datasets, series))
    if not filled:
        _placeholder(path, empty_text)
        return
    fig, axes = _figure(len(filled))
    for ax, (title, datasets, series) in zip(axes, filled):
        _bars(ax, datasets, series, _colors(data.exps))
        ax.set(title=title, ylabel="%")
        ax.legend(fontsize=7)
    _save(fig, path)


def plot_methods(data: ReportData, path: Path, empty_text: str) -> None:
    """Methods x metrics bars with ± std error bars over seeds; the paper's Table 4 beside them."""
    cols = comparison_columns(data)
    if not is_grid(data.exps) or not cols:
        _placeholder(path, empty_text)
        return
    cells = method_cells(data, cols)
    fig, axes = _figure(2, width=max(5.0, 1.3 * len(cols)), height=3.8)
    width = 0.8 / max(len(cells), 1)
    for i, (method, row) in enumerate(cells.items()):
        xs = [j + (i - (len(cells) - 1) / 2) * width for j, c in enumerate(cols) if row[c]]
        aggs = [row[c] for c in cols if row[c]]
        axes[0].bar(xs, [a.mean for a in aggs], width, yerr=[a.std for a in aggs], capsize=2,
                    label=f"{method} (n={max(a.n for a in aggs)})", color=f"C{i % 10}", edgecolor="0.3")
    axes[0].set_xticks(range(len(cols)), [c.label for c in cols], rotation=30, ha="right", fontsize=7)
    axes[0].set(title="this project: mean ± std over seeds", ylabel="%")
    axes[0].legend(fontsize=7)
    axes[0].grid(axis="y", alpha=0.3)
    paper = {name: [vals.get((c.section, c.dataset, c.metric)) for c in cols] for name, vals in TABLE4.items()}
    _bars(axes[1], [c.label for c in cols], paper, {n: f"C{i + 5}" for i, n in enumerate(paper)})
    axes[1].tick_params(axis="x", labelrotation=30, labelsize=7)
    axes[1].set(title="paper, Table 4 (ViT-B, full SSV2): orientation only", ylabel="%")
    axes[1].legend(fontsize=7)
    _save(fig, path)


# ---------------------------------------------------------------------------------------


def as_json(data: ReportData, skipped_curves: list[str]) -> dict:
    """The report's content as plain data (for tests and scripts)."""
    table = headline_table(data)
    rows = [{"section": r.section, "dataset": r.dataset, "metric": r.metric,
             "values": {e: table.value(r, e) for e in table.exps}, "paper": table.paper(r)} for r in table.rows]
    runs = [{"exp": r.exp, "stage": r.stage, "task": r.task, "dataset": r.dataset, "part": r.part,
             "run_id": r.run_id, "status": r.status, "paper_config": r.paper_config} for r in data.latest]
    methods = {}
    if is_grid(data.exps):
        cols = comparison_columns(data)
        methods = {m: {c.label: (None if a is None else {"mean": a.mean, "std": a.std, "n": a.n, "values": a.values})
                       for c, a in row.items()} for m, row in method_cells(data, cols).items()}
    return {"exps": data.exps, "where": data.where, "show_paper": data.show_paper, "empty": not data.latest,
            "methods": methods,
            "headline": rows, "runs": runs, "missing": missing_runs(data), "skipped_curves": skipped_curves,
            "plots": list(PLOTS), "summary": SUMMARY}


def write_report(data: ReportData, out: str | Path) -> dict:
    """Write summary.md and the three plots under `out` (each atomically). Returns `as_json`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    empty_text = "no runs" if not data.latest else None
    skipped = plot_pretrain(data, out / PRETRAIN_PNG, empty_text or "no pretrain runs")
    plot_retrieval(data, out / RETRIEVAL_PNG, empty_text or "no retrieval runs")
    plot_classification(data, out / CLASSIFICATION_PNG, empty_text or "no classification runs")
    plot_methods(data, out / METHODS_PNG, empty_text or "no methods x seeds grid in these experiments")
    io.atomic_write_text(out / SUMMARY, render_summary(data, skipped))
    return as_json(data, skipped)
