"""The report's plots: pretraining curves, retrieval, classification, methods over seeds, temporal probes.

matplotlib's object API on the Agg canvas: no pyplot state, no display needed. A plot
with nothing to show is a placeholder that says so, since the rule declares every file.
"""
from __future__ import annotations

from pathlib import Path

from tvts import io
from tvts.grid import is_grid
from tvts.paper import TABLE4, paper_post_value, paper_value
from tvts.report.content import (CURVES, PHASES, TEMPORAL_COLUMNS, ReportData, comparison_columns, datasets_of,
                                 method_cells, method_intervals)

_RETRIEVAL = ("r1", "r5", "r10")


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
        hatch = "//" if name.startswith("paper") else None
        bars = ax.bar(xs, ys, width, label=name, color=colors.get(name, "0.75"), hatch=hatch, edgecolor="0.3")
        ax.bar_label(bars, fmt="%.1f", fontsize=6)
    ax.set_xticks(range(len(groups)), groups)
    ax.grid(axis="y", alpha=0.3)


def _series(data: ReportData, section: str, dataset_metric: list[tuple[str, str]]) -> dict[str, list]:
    series = {e: [data.metric(e, section, m, d) for d, m in dataset_metric] for e in data.exps}
    if data.show_paper:
        series["paper"] = [paper_value(section, d, m) for d, m in dataset_metric]
    if data.show_paper and any(e.endswith("-post") for e in data.exps):  # the paper's post-pretrained model
        series["paper +CC3M+WebVid"] = [paper_post_value(section, d, m) for d, m in dataset_metric]
    return {k: v for k, v in series.items() if any(x is not None for x in v)}


def plot_retrieval(data: ReportData, path: Path, empty_text: str) -> None:
    """R@1/5/10 bars per experiment: zero-shot V2V, and T2V zero-shot and fine-tuned, per dataset."""
    panels = []  # (title, section, dataset, metric prefix)
    panels += [(f"zero-shot V2V, {d}", "zeroshot_v2v", d, "") for d in datasets_of(data, "zeroshot_v2v")]
    for d in datasets_of(data, "t2v"):
        panels += [(f"T2V {PHASES[phase]}, {d}", "t2v", d, f"{phase}/") for phase in ("zeroshot", "finetuned")]
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
        datasets = datasets_of(data, section)
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


def plot_temporal(data: ReportData, path: Path, empty_text: str) -> None:
    """The temporal-order probes per method (or experiment): bars at the mean over seeds, error bars the
    95 % bootstrap interval over test clips where the evaluation wrote per-clip hits; chance dashed."""
    cols = [c for c in comparison_columns(data) if (c.section, c.metric) in TEMPORAL_COLUMNS]
    if not cols:
        _placeholder(path, empty_text)
        return
    cells = method_cells(data, cols)
    means, _ = method_intervals(data, cols)
    fig, axes = _figure(1, width=max(5.0, 1.1 * len(cols)), height=3.8)
    ax, width = axes[0], 0.8 / max(len(cells), 1)
    for i, (method, row) in enumerate(cells.items()):
        shown = [(j, means.get(method, {}).get(c), row[c]) for j, c in enumerate(cols) if row[c]]
        xs = [j + (i - (len(cells) - 1) / 2) * width for j, _, _ in shown]
        ys = [iv.value if iv else agg.mean for _, iv, agg in shown]
        err = [[y - iv.lo if iv else 0.0 for y, (_, iv, _) in zip(ys, shown)],
               [iv.hi - y if iv else 0.0 for y, (_, iv, _) in zip(ys, shown)]]
        ax.bar(xs, ys, width, yerr=err, capsize=2, label=method, color=f"C{i % 10}", edgecolor="0.3")
    ax.axhline(50, color="0.3", linestyle="--", linewidth=0.8, label="chance (within-pair, arrow)")
    ax.set_xticks(range(len(cols)), [c.label for c in cols], rotation=30, ha="right", fontsize=7)
    ax.set(title="temporal-order probes: mean over seeds, 95 % interval over test clips", ylabel="%")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)
