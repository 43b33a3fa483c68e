"""What the report shows, read from the store once: the runs, their curves, what is missing.

Also the selections and names that the summary, the plots and `as_json` share: the
headline table, the methods x seeds columns, the datasets of a task, metric labels,
and the output file names (fixed: the Snakemake rule declares them).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tvts import tracking
from tvts.compare import (FLOOR, PIXELS, GridIntervals, RowKey, Table, build_table, row_sort_key, section_of,
                          upper_bound)
from tvts.grid import Aggregate, aggregate, group_by_method, is_grid
from tvts.stats import Interval
from tvts.tracking import RunRecord

SUMMARY = "summary.md"
SUMMARY_HTML = "summary.html"  # the same, as a page with the plots inline
PRETRAIN_PNG = "pretrain_curves.png"
RETRIEVAL_PNG = "retrieval.png"
CLASSIFICATION_PNG = "classification.png"
METHODS_PNG = "methods.png"
TEMPORAL_PNG = "temporal.png"
PLOTS = (PRETRAIN_PNG, RETRIEVAL_PNG, CLASSIFICATION_PNG, METHODS_PNG, TEMPORAL_PNG)
# The methods x seeds comparison: (task, metric), on the first dataset each task has.
# The temporal-order columns (tvts/eval/temporal.py): within-pair and arrow of time, on the CLS
# (the linear probe's within-pair is the CLS one) and on the mean-pooled tokens.
# The attentive probe (tvts/eval/attentive.py) reads the whole token grid. The temporal job's own
# CLS class probe (the linear probe's protocol on the same features) stands in where the grid
# runs no `linear` task.
TEMPORAL_COLUMNS = (("linear", "top1"), ("linear", "within_pair_top1"), ("temporal", "cls/top1"),
                    ("temporal", "cls/within_pair_top1"), ("temporal", "cls/arrow_top1"),
                    ("temporal", "mean/top1"), ("temporal", "mean/within_pair_top1"), ("temporal", "mean/arrow_top1"),
                    ("temporal", "attentive/top1"), ("temporal", "attentive/within_pair_top1"),
                    ("temporal", "attentive/arrow_top1"))
COMPARISON = (*TEMPORAL_COLUMNS,
              ("zeroshot_v2v", "r1"), ("zeroshot_v2v", "r5"), ("zeroshot_v2v", "r10"),
              ("finetune", "top1"), ("t2v", "zeroshot/r1"), ("t2v", "finetuned/r1"))
_SHORT = {"linear": "linear", "temporal": "temporal", "zeroshot_v2v": "ZS V2V", "finetune": "fine-tune", "t2v": "T2V"}
CURVES = ("train/loss_sort", "val/sort_exact")
# Feature health (tvts/eval/health.py) per readout: (task, metric prefix, label). The linear task logs
# its CLS health as `health/<key>`, the temporal probes per pool as `health/<pool>/<key>`; each
# readout's test metrics sit beside its train accuracies, so a probe that cannot fit shows as such.
HEALTH_READOUTS = (("linear", "", "linear probe, CLS"), ("temporal", "cls/", "CLS"),
                   ("temporal", "mean/", "mean pool"), ("temporal", "attentive/", "attentive"))
# (label, metric under `health/<prefix>` or, for the test accuracies, under `<prefix>`)
HEALTH_COLUMNS = (("effective rank", "health", "effective_rank"), ("centred share", "health", "centred_share"),
                  ("probe train top-1", "health", "train_top1"), ("test top-1", "", "top1"),
                  ("arrow train", "health", "arrow_train_top1"), ("arrow test", "", "arrow_top1"))
# Stages every experiment is expected to have; the evaluations are expected where another shown
# experiment has them (an experiment is "missing" what its neighbours have).
CORE_STAGES = ("pretrain", "select_ckpt")
# What a no-pretraining baseline (`init_model`) does not run.
TRAINING_STAGES = frozenset({"pretrain", "text_only_baseline", "select_ckpt", "align_asr", "shard_clips"})
# Stages that run once per data set or init, under one experiment's name, not for every experiment.
SHARED_STAGES = frozenset({"align_asr", "shard_clips", "shard_union", "shard_pairs", "init_image_mae", "init_text_mlm",
                           "text_only_baseline"})
# What a post-pretrained experiment (`<exp>-post`) has instead of pretraining: post_pretrain.
POST_SKIPS = frozenset({"pretrain", "select_ckpt", "init_model"})


@dataclass
class ReportData:
    """What the report shows, read from the store once."""

    exps: list[str]
    records: list[RunRecord]  # every run of these experiments, any status, newest first
    latest: list[RunRecord]  # the run that counts per stage/evaluation
    where: str
    curves: dict[str, dict[str, list[tuple[int, float]]]] = field(default_factory=dict)
    results: str = "results"  # where the evaluations' JSONs (per-clip hits, for intervals) are
    # method_intervals' answers: the summary and temporal.png ask for the same bootstraps
    interval_cache: dict = field(default_factory=dict, repr=False)

    @property
    def show_paper(self) -> bool:
        return any(r.paper_config for r in self.latest)

    def run(self, exp: str, section: str, dataset: str = "") -> RunRecord | None:
        return next((r for r in self.latest if r.exp == exp and section_of(r) == section
                     and r.dataset == dataset), None)

    def metric(self, exp: str, section: str, metric: str, dataset: str = "") -> float | None:
        run = self.run(exp, section, dataset)
        return run.metrics.get(metric) if run else None


def collect(exps: list[str] | None, experiment: str | None = None, uri: str | None = None,
            results: str = "results") -> ReportData:
    """Read the runs of `exps` (None: every experiment in the store) and their training curves."""
    uri = uri or tracking.tracking_uri()
    experiment = experiment or tracking.experiment_name()
    exps = list(dict.fromkeys(exps)) if exps else tracking.list_exps(experiment, uri)
    records = tracking.search_stage_runs(exps, None, experiment, uri)
    data = ReportData(exps, records, tracking.pick_latest(records), f"MLflow experiment `{experiment}` at `{uri}`",
                      results=results)
    for exp in exps:
        for stage in ("pretrain", "text_only_baseline"):
            if run := data.run(exp, stage):
                data.curves[f"{exp}/{stage}"] = {k: tracking.metric_history(run.run_id, k, uri) for k in CURVES}
    return data


def missing_runs(data: ReportData) -> list[str]:
    """One line per experiment and expected stage/evaluation that has no finished run.

    A no-pretraining baseline (an experiment with an `init_model` run) is not expected to have
    the training stages, nor a pretrained experiment an `init_model` run, nor a post-pretrained
    one (`<exp>-post`) pretraining; the data and init stages run once, under one experiment.
    """
    expected = {(s, "") for s in CORE_STAGES}
    expected |= {(section_of(r), r.dataset) for r in data.latest if not r.part and section_of(r) not in SHARED_STAGES}
    lines = []
    for exp in data.exps:
        if not any(r.exp == exp for r in data.records):
            lines.append(f"`{exp}`: no runs at all")
            continue
        baseline = any(r.exp == exp and r.stage == "init_model" for r in data.records)
        for section, dataset in sorted(expected, key=lambda k: row_sort_key(RowKey(k[0], k[1], ""))):
            if data.run(exp, section, dataset) or by_design(exp, section, baseline):
                continue
            name = f"{section}/{dataset}" if dataset else section
            tried = sorted({r.status for r in data.records if r.exp == exp and section_of(r) == section
                            and r.dataset == dataset})
            lines.append(f"`{exp}`: {name}" + (f" (only {', '.join(tried)} runs)" if tried else ""))
    return lines


def by_design(exp: str, section: str, baseline: bool) -> bool:
    """Whether an experiment lacks `section` by design (not a missing run)."""
    if exp.endswith("-post"):
        return section in POST_SKIPS
    return section in TRAINING_STAGES | {"post_pretrain"} if baseline else section in ("init_model", "post_pretrain")


_METRIC_NAMES = {"r1": "R@1", "r5": "R@5", "r10": "R@10", "medr": "MedR", "top1": "top-1", "top5": "top-5",
                 "within_pair_top1": "within-pair", "arrow_top1": "arrow of time"}
PHASES = {"finetuned": "fine-tuned", "zeroshot": "zero-shot", "cls": "CLS", "mean": "mean-pool", "": ""}


def metric_label(metric: str) -> str:
    """'finetuned/r1' -> 'fine-tuned R@1'; keys without a paper name stay as logged ('val/sort_exact')."""
    phase, _, name = metric.rpartition("/")
    if name not in _METRIC_NAMES or phase not in PHASES:
        return metric
    return f"{PHASES[phase]} {_METRIC_NAMES[name]}".strip()


def headline_table(data: ReportData) -> Table:
    """The headline metrics of the runs that count (parts of split stages left out)."""
    runs = [r for r in data.latest if not r.part]
    return build_table(runs, data.exps, headline_only=True, show_paper=data.show_paper,
                       paper_rows=data.show_paper)


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
        datasets = datasets_of(data, section)
        # within-pair exists only where a dataset declares reversed pairs
        if datasets and any(data.metric(e, section, metric, datasets[0]) is not None for e in data.exps):
            cols.append(Column(section, datasets[0], metric))
    return cols


def method_cells(data: ReportData, cols: list[Column]) -> dict[str, dict[Column, Aggregate | None]]:
    """method -> column -> mean/std/n over that method's seeds (experiments `<method>-s<seed>`)."""
    groups = group_by_method(data.exps)
    return {m: {c: aggregate(data.metric(e, c.section, c.metric, c.dataset) for e in exps) for c in cols}
            for m, exps in groups.items()}


def method_intervals(data: ReportData, cols: list[Column]) -> tuple[dict, dict]:
    """(method -> column -> Interval of its mean over seeds, method -> column -> tvts − method paired by
    seed), from the evaluations' per-clip hits under `data.results`; a column without them is absent."""
    key = tuple(cols)
    if key not in data.interval_cache:
        data.interval_cache[key] = _method_intervals(data, cols)
    return data.interval_cache[key]


def _grid_intervals(data: ReportData) -> GridIntervals:
    """One GridIntervals per report, so each evaluation JSON's per-clip hits are read once."""
    if "grid" not in data.interval_cache:
        data.interval_cache["grid"] = GridIntervals(data.results, group_by_method(data.exps))
    return data.interval_cache["grid"]


def _method_intervals(data: ReportData, cols: list[Column]) -> tuple[dict, dict]:
    grid = _grid_intervals(data)
    means: dict[str, dict[Column, Interval]] = {}
    diffs: dict[str, dict[Column, Interval]] = {}
    for method in grid.members:
        for c in cols:
            row = RowKey(c.section, c.dataset, c.metric)
            if (iv := grid.interval(method, row)) is not None:
                means.setdefault(method, {})[c] = iv
            if method != "tvts" and (d := grid.difference(method, row)) is not None:
                diffs.setdefault(method, {})[c] = d
    return means, diffs


def chance(data: ReportData, row: RowKey, exp: str) -> float | None:
    """A metric's chance level where it is defined by the evaluation alone: top-K of K-way
    classification (n_classes logged by the run), within-pair and arrow of time (50)."""
    name = row.metric.rpartition("/")[2]
    if name in ("within_pair_top1", "arrow_top1"):
        return 50.0
    n = data.metric(exp, row.section, "n_classes", row.dataset)
    if name in ("top1", "top5") and n:
        return min(100.0, 100.0 * int(name[3:]) / n)
    return None


@dataclass(frozen=True)
class Check:
    """The instrument check of one metric: can this grid see an order effect on it?"""

    upper: Interval | None    # the upper bound − FLOOR, paired by seed
    pixels: Interval | None   # the pixel probe's mean over seeds
    chance: float | None

    @property
    def passed(self) -> bool | None:
        """True / False by the pre-registered gate; None when a control is not in the grid."""
        if self.upper is None or self.pixels is None or self.chance is None:
            return None
        return self.upper.verdict() == "ahead" and self.pixels.lo > self.chance

    def verdict(self, difference: Interval) -> str:
        """A paired difference's verdict, gated: "not measurable" where the instrument cannot see."""
        if self.passed is False:
            return "not measurable"
        return difference.verdict() if self.passed else f"{difference.verdict()} (unchecked)"


def instrument_checks(data: ReportData, cols: list[Column]) -> dict[Column, Check]:
    key = ("checks", tuple(cols))
    if key not in data.interval_cache:
        grid, pixels = _grid_intervals(data), method_intervals(data, cols)[0].get(PIXELS, {})
        pixel_exp = next(iter(grid.members.get(PIXELS, [])), None)
        data.interval_cache[key] = {
            c: Check(grid.difference(FLOOR, row, reference=upper_bound(grid.members)), pixels.get(c),
                     chance(data, row, pixel_exp) if pixel_exp else None)
            for c in cols for row in [RowKey(c.section, c.dataset, c.metric)]}
    return data.interval_cache[key]


@dataclass(frozen=True)
class HealthRow:
    """The feature health of one readout of one method (its seeds aggregated) or experiment."""

    name: str      # the method (a grid) or the experiment
    seeds: int     # the experiments aggregated (1 outside a grid)
    readout: str   # HEALTH_READOUTS' label
    dataset: str
    cells: tuple[Aggregate | None, ...]  # one per HEALTH_COLUMNS


def health_rows(data: ReportData) -> list[HealthRow]:
    """Per method (experiment, outside a grid) and readout, the health columns over its seeds; readouts
    no run logged health for are left out."""
    groups = group_by_method(data.exps) if is_grid(data.exps) else {e: [e] for e in data.exps}
    rows = []
    for name, exps in groups.items():
        for task, prefix, label in HEALTH_READOUTS:
            for dataset in datasets_of(data, task)[:1]:
                cells = tuple(aggregate(data.metric(e, task, "/".join(filter(None, (top, prefix + key))), dataset)
                                        for e in exps) for _, top, key in HEALTH_COLUMNS)
                if any(c is not None for c, (_, top, _) in zip(cells, HEALTH_COLUMNS) if top):
                    rows.append(HealthRow(name, len(exps), label, dataset, cells))
    return rows


def datasets_of(data: ReportData, section: str) -> list[str]:
    """The datasets that some counted run of `section` has, in table order."""
    found = {r.dataset for r in data.latest if section_of(r) == section and r.dataset}
    return sorted(found, key=lambda d: row_sort_key(RowKey(section, d, "")))
