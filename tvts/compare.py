"""Experiments side by side: one row per (stage or task, dataset, metric), one column per experiment.

The cells come from `tracking.RunRecord`s (the latest FINISHED run per stage/evaluation);
the `paper` column holds the paper's number where it reports one (`tvts.paper`).
Shared by `tvts compare` (every metric) and `tvts report` (the headline ones).
"""
from __future__ import annotations

import csv
import re
import sys
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Iterable, TextIO

from tvts import io
from tvts.grid import Aggregate, aggregate, group_by_method, parse_experiment
from tvts.paper import PAPER, paper_post_value, paper_value
from tvts.stats import Interval, load_per_clip, metric_interval, paired_difference
from tvts.tracking import RunRecord

MISSING = "–"
REFERENCE_METHOD = "tvts"   # the method every paired difference is taken against
# The pre-registered positive controls (docs/results.md, "Pre-registered" and its amendment): a verdict
# counts only on a metric where the upper bound is ahead of the floor and the pixel probe above chance
# (the report's check). The upper bound is the grid's supervised control where it has one, else video_order.
UPPER_BOUNDS, PIXELS, FLOOR = ("supervised", "video_order"), "pixels", "random"
CONTROLS = (*UPPER_BOUNDS, PIXELS)
UPPER_BOUND_TEXT = {
    "supervised": "the same encoder and inits trained on the dataset's train labels, then read frozen",
    "video_order": "the same encoder, inits, data and budget, trained to order its clip's own shuffled segments "
                   "from the CLS"}


def upper_bound(methods) -> str:
    """The grid's upper-bound control: the first of UPPER_BOUNDS among `methods` (the first if none is)."""
    return next((m for m in UPPER_BOUNDS if m in methods), UPPER_BOUNDS[0])


# Evaluations whose JSON carries per-clip hits (tvts.stats): their metrics get intervals.
PER_CLIP_SECTIONS = ("linear", "temporal")

# Training stages first, then the evaluations in the order of the paper's tables, then data stages.
SECTION_ORDER = ("pretrain", "text_only_baseline", "select_ckpt", "post_pretrain",
                 "zeroshot_v2v", "linear", "temporal", "finetune", "t2v", "align_asr", "shard_clips")
SECTION_LABELS = {"pretrain": "Pretraining (TVTS)", "text_only_baseline": "Text-only baseline",
                  "select_ckpt": "Selected checkpoint", "post_pretrain": "Post-pretraining (CC3M + WebVid)",
                  "zeroshot_v2v": "Zero-shot V2V retrieval",
                  "linear": "Linear probe", "temporal": "Temporal-order probes (within-pair, arrow of time)",
                  "finetune": "Fine-tune", "t2v": "Text-to-video retrieval"}
DATASET_ORDER = ("ssv2", "k400", "ucf101", "hmdb51", "msrvtt", "didemo", "msvd", "lsmdc")
_SORT = ("val/sort_exact_argmax", "val/sort_exact", "val/sort_acc")
_T2V = tuple(f"{phase}/{m}" for phase in ("zeroshot", "finetuned") for m in ("r1", "r5", "r10", "medr"))
# Where a training run's time went (tvts/train/telemetry.py): every `tvts compare` shows them; the
# report gives them a table of their own (not in the headline one).
PERF = ("perf/samples_per_s_per_device", "perf/data_wait_share", "perf/step_time_p50_s", "perf/step_time_p99_s",
        "perf/mfu", "perf/peak_mem_gb", "perf/device_hours")
HEADLINE = {
    "pretrain": _SORT + ("train/loss", "train/loss_sort", "train/loss_align", "train/sort_acc"),
    "text_only_baseline": _SORT,
    "select_ckpt": (),  # every `best/<metric>` (the selection metric is configurable)
    "post_pretrain": ("val/loss_align", "val/t2v_r1", "val/v2t_r1", "train/loss_align"),
    "zeroshot_v2v": ("r1", "r5", "r10"),
    "linear": ("top1", "top5", "within_pair_top1"),
    # tvts/eval/temporal.py: per pool (cls, the paper's feature; mean of the patch tokens)
    "temporal": tuple(f"{pool}/{m}" for pool in ("cls", "mean") for m in ("arrow_top1", "within_pair_top1", "top1")),
    "finetune": ("top1", "top5"),
    "t2v": _T2V,
}


@dataclass(frozen=True)
class RowKey:
    section: str  # the eval task (`tvts.task`), else the stage
    dataset: str  # the dataset, the part of a split stage ("part-3"), or ""
    metric: str


class PaperColumn:
    """The paper's number beside a row, when the table shows it (`show_paper`)."""

    show_paper: bool

    def paper(self, row: RowKey) -> float | None:
        return paper_value(row.section, row.dataset, row.metric) if self.show_paper else None

    @property
    def show_post(self) -> bool:
        """A second paper column, the post-pretrained model's, beside an `<exp>-post` experiment."""
        return self.show_paper and any(e.endswith("-post") for e in getattr(self, "exps", ()))

    def paper_post(self, row: RowKey) -> float | None:
        return paper_post_value(row.section, row.dataset, row.metric) if self.show_post else None

    def paper_cells(self, row: RowKey) -> list[str]:
        """[] without a paper column, else the formatted number ("" where the paper has none), and
        the post-pretrained model's beside it when shown."""
        if not self.show_paper:
            return []
        values = [self.paper(row)] + ([self.paper_post(row)] if self.show_post else [])
        return [format_metric(row.metric, v) if v is not None else "" for v in values]


@dataclass
class Table(PaperColumn):
    """Cells of a side-by-side table; `values[(row, exp)]` is absent where a run or metric is."""

    exps: list[str]
    rows: list[RowKey]
    values: dict[tuple[RowKey, str], float] = field(default_factory=dict)
    run_ids: dict[tuple[RowKey, str], str] = field(default_factory=dict)
    show_paper: bool = True

    def value(self, row: RowKey, exp: str) -> float | None:
        return self.values.get((row, exp))


def section_of(run: RunRecord) -> str:
    return run.task or run.stage


def is_headline(section: str, metric: str) -> bool:
    if section == "select_ckpt":
        return metric.startswith("best/")
    return metric in HEADLINE.get(section, ())


def natural_key(text: str) -> tuple:
    """'part-10' after 'part-2'."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))


def _rank(value: str, order: Iterable[str]) -> tuple:
    order = tuple(order)
    return (order.index(value), ()) if value in order else (len(order), natural_key(value))


def row_sort_key(row: RowKey) -> tuple:
    metrics = HEADLINE.get(row.section, ())
    return (_rank(row.section, SECTION_ORDER), _rank(row.dataset, ("",) + DATASET_ORDER),
            _rank(row.metric, metrics))


def build_table(runs: Iterable[RunRecord], exps: list[str], headline_only: bool = False,
                show_paper: bool = True, paper_rows: bool = False) -> Table:
    """Lay `runs` out as rows x experiments.

    Args:
        runs: one run per (exp, stage, task, dataset[, part]), e.g. `tracking.latest_runs`.
        exps: the columns, in order; runs of other experiments are ignored.
        headline_only: keep only the metrics the paper and the report talk about.
        show_paper: fill the paper column.
        paper_rows: add a row for every number the paper reports, even where no run has it.
    """
    table = Table(exps=list(exps), rows=[], show_paper=show_paper)
    rows: set[RowKey] = set()
    for run in runs:
        if run.exp not in table.exps:
            continue
        section = section_of(run)
        for metric, value in run.metrics.items():
            if headline_only and not is_headline(section, metric):
                continue
            row = RowKey(section, run.dataset or run.part, metric)
            rows.add(row)
            table.values[(row, run.exp)] = value
            table.run_ids[(row, run.exp)] = run.run_id
    if paper_rows:
        rows.update(RowKey(*key) for key in PAPER)
    table.rows = sorted(rows, key=row_sort_key)
    return table


def format_value(value: float | None) -> str:
    """Short, readable: counts as integers, percentages to 2 decimals, small values to 4 digits."""
    if value is None:
        return MISSING
    if value != value:  # NaN
        return "nan"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    if abs(value) >= 100:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.4g}"


PERCENT_METRICS = ("r1", "r5", "r10", "top1", "top5", "within_pair_top1", "arrow_top1")


def format_metric(metric: str, value: float | None) -> str:
    """Like `format_value`, but percentages (R@K, top-K) always with 2 decimals, so columns line up."""
    if value is not None and value == value and metric.rpartition("/")[2] in PERCENT_METRICS:
        return f"{value:.2f}"
    return format_value(value)


def header(table: Table) -> list[str]:
    return ["stage/task", "dataset", "metric", *table.exps] + paper_headers(table)


def paper_headers(table: PaperColumn) -> list[str]:
    """The paper columns' names: its YT-Temporal model, and its post-pretrained one beside `<exp>-post`."""
    return (["paper"] if table.show_paper else []) + (["paper +CC3M+WebVid"] if table.show_post else [])


def render_text(table: Table) -> str:
    """Plain-text columns: labels left-aligned, numbers right-aligned."""
    lines = [header(table)]
    for row in table.rows:
        cells = [format_metric(row.metric, table.value(row, e)) for e in table.exps]
        lines.append([row.section, row.dataset, row.metric, *cells, *table.paper_cells(row)])
    return align_columns(lines)


def align_columns(lines: list[list[str]], labels: int = 3) -> str:
    """Header + rows as text: the first `labels` columns left-aligned, the rest right-aligned."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]

    def fmt(line: list[str]) -> str:
        parts = [c.ljust(w) if i < labels else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(lines[0]), rule, *(fmt(line) for line in lines[1:])])


def _write_csv_rows(table: Table, f: TextIO) -> None:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(header(table))
    for row in table.rows:
        cells = [repr(v) if (v := table.value(row, e)) is not None else "" for e in table.exps]
        if table.show_paper:
            paper = table.paper(row)
            cells.append(repr(paper) if paper is not None else "")
        if table.show_post:
            post = table.paper_post(row)
            cells.append(repr(post) if post is not None else "")
        writer.writerow([row.section, row.dataset, row.metric, *cells])


def to_csv(table: Table) -> str:
    """The table as CSV: full-precision values, empty cells where a value is missing."""
    buf = StringIO()
    _write_csv_rows(table, buf)
    return buf.getvalue()


def write_csv(table: Table, path: str | Path) -> None:
    """Write the CSV atomically to `path`, or to stdout for '-'."""
    if str(path) == "-":
        sys.stdout.write(to_csv(table))
        return
    io.atomic_write_text(path, to_csv(table))


def unknown_exp_message(exp: str, records: list[RunRecord], where: str) -> str:
    """Why `exp` has no column: no runs at all, or none that finished."""
    states = sorted({r.status for r in records if r.exp == exp})
    if states:
        return f"experiment {exp!r}: no FINISHED runs in {where} (only {', '.join(states)})"
    return f"experiment {exp!r}: no runs in {where}"


@dataclass
class GroupedTable(PaperColumn):
    """`Table` with its experiments folded into methods: each cell aggregates the method's seeds."""

    methods: list[str]
    members: dict[str, list[str]]  # method -> its experiments (one per seed)
    rows: list[RowKey]
    cells: dict[tuple[RowKey, str], Aggregate] = field(default_factory=dict)
    show_paper: bool = True

    def cell(self, row: RowKey, method: str) -> Aggregate | None:
        return self.cells.get((row, method))


def group_table(table: Table) -> GroupedTable:
    """Fold `<method>-s<seed>` columns into one per method: mean, sample std and n of each metric."""
    members = group_by_method(table.exps)
    grouped = GroupedTable(list(members), members, list(table.rows), show_paper=table.show_paper)
    for row in table.rows:
        for method, exps in members.items():
            agg = aggregate(table.value(row, e) for e in exps)
            if agg is not None:
                grouped.cells[(row, method)] = agg
    return grouped


def format_aggregate(metric: str, agg: Aggregate | None) -> str:
    if agg is None:
        return MISSING
    text = f"{format_metric(metric, agg.mean)} ± {format_metric(metric, agg.std)}"
    return text if agg.n > 1 else f"{format_metric(metric, agg.mean)} (n=1)"


def render_grouped_text(g: GroupedTable, intervals: "GridIntervals | None" = None) -> str:
    """Mean ± std over seeds per method; with `intervals`, each metric's 95 % interval over test clips after it."""
    seeds = {m: len(es) for m, es in g.members.items()}
    head = ["stage/task", "dataset", "metric", *[f"{m} (n={seeds[m]})" for m in g.methods]]
    head += ["paper"] if g.show_paper else []
    lines = [head]
    for row in g.rows:
        cells = [format_aggregate(row.metric, g.cell(row, m))
                 + (f" {format_interval(iv)}" if intervals and (iv := intervals.interval(m, row)) else "")
                 for m in g.methods]
        lines.append([row.section, row.dataset, row.metric, *cells, *g.paper_cells(row)])
    return align_columns(lines)


def grouped_csv(g: GroupedTable) -> str:
    """One row per metric; `<method>_mean`, `<method>_std`, `<method>_n` columns, full precision."""
    buf = StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["stage/task", "dataset", "metric",
                     *[f"{m}_{k}" for m in g.methods for k in ("mean", "std", "n")]])
    for row in g.rows:
        cells = []
        for m in g.methods:
            agg = g.cell(row, m)
            cells += [repr(agg.mean), repr(agg.std), str(agg.n)] if agg else ["", "", "0"]
        writer.writerow([row.section, row.dataset, row.metric, *cells])
    return buf.getvalue()


class GridIntervals:
    """Bootstrap intervals of a grid's metrics from the evaluations' per-clip hits (tvts.stats).

    Reads `<results>/<exp>/eval/<section>/<dataset>.json`; a metric without per-clip hits for some
    seed (an older run, or results on another machine) gets no interval rather than a partial one.

    Args:
        results: the results folder. members: method -> its experiments `<method>-s<seed>`.
    """

    def __init__(self, results: str | Path, members: dict[str, list[str]], replicates: int = 10_000):
        self.results, self.members, self.replicates = Path(results), members, replicates
        self._files: dict[Path, dict | None] = {}

    def hits(self, exp: str, row: RowKey):
        """(ids, per-clip hits) of one experiment's metric, or None."""
        if row.section not in PER_CLIP_SECTIONS:
            return None
        path = self.results / exp / "eval" / row.section / f"{row.dataset}.json"
        if path not in self._files:
            self._files[path] = load_per_clip(path)
        per_clip = self._files[path]
        return None if per_clip is None or row.metric not in per_clip else (per_clip["ids"], per_clip[row.metric])

    def by_seed(self, method: str, row: RowKey) -> dict[int | None, tuple] | None:
        found = {parse_experiment(e)[1]: self.hits(e, row) for e in self.members.get(method, [])}
        return found if found and all(h is not None for h in found.values()) else None

    def interval(self, method: str, row: RowKey) -> Interval | None:
        """The method's mean over seeds with its 95 % interval over test clips."""
        found = self.by_seed(method, row)
        return metric_interval([h for _, h in found.values()], self.replicates) if found else None

    def difference(self, method: str, row: RowKey, reference: str = REFERENCE_METHOD) -> Interval | None:
        """reference − method, paired by seed over the seeds both have, on the same test clips. A
        method run on one seed only (a model the seed does not change, grid `seeds: [0]`) pairs
        with every seed of the reference."""
        a, b = self.by_seed(reference, row), self.by_seed(method, row)
        if a and b and len(b) == 1 and len(a) > 1:
            b = dict.fromkeys(a, next(iter(b.values())))
        seeds = sorted(set(a or {}) & set(b or {}), key=lambda s: -1 if s is None else s)
        if not seeds or any(list(a[s][0]) != list(b[s][0]) for s in seeds):
            return None
        return paired_difference([a[s][1] for s in seeds], [b[s][1] for s in seeds], self.replicates)


def format_interval(interval: Interval | None) -> str:
    return MISSING if interval is None or interval.lo != interval.lo else f"[{interval.lo:.1f}, {interval.hi:.1f}]"


def differences_text(g: GroupedTable, intervals: GridIntervals) -> str:
    """`tvts − method` per metric with per-clip hits: the paired difference, its 95 % interval, the verdict."""
    lines = [["stage/task", "dataset", "metric", "method", "tvts − method", "95 % interval", "verdict (ungated)"]]
    for row in g.rows:
        for method in (m for m in g.methods if m != REFERENCE_METHOD and m not in CONTROLS):
            d = intervals.difference(method, row)
            if d is not None:
                lines.append([row.section, row.dataset, row.metric, method, f"{d.value:+.2f}", format_interval(d),
                              d.verdict()])
    return align_columns(lines, labels=4) if len(lines) > 1 else ""
