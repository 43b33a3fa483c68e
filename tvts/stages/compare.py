"""`tvts compare EXP_A EXP_B ...`: the experiments' runs side by side, from the MLflow store.

One row per (stage or task, dataset, metric), one column per experiment, and the paper's
number where it reports one. Each cell is the latest FINISHED run of that stage or
evaluation; failed, killed and still-running reruns are ignored. An experiment without
finished runs is named on stderr and the exit status is 2; the others are still printed.

An EXP may be a glob over the store's experiment names (`'tvts-s*'`). With `--by-method`, the
experiments `<method>-s<seed>` of a methods x seeds grid fold into one column per method,
each cell the mean ± sample std over the seeds (CSV: `<method>_mean`, `_std`, `_n`), and, where
the evaluation JSONs under `--results` carry per-clip hits (linear and temporal probes), the 95 %
bootstrap interval over test clips after it, and a table of `tvts − method` paired by seed with
its interval and verdict (docs/results.md, "Pre-registered").
"""
from __future__ import annotations

import argparse
import fnmatch
import sys

from tvts import compare, io, tracking
from tvts.stages.common import add_store_args


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tvts compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("exps", nargs="+", metavar="EXP", help="experiment names (the runs' tvts.exp tag)")
    p.add_argument("--csv", metavar="PATH",
                   help="also write the table as CSV ('-': CSV to stdout instead of the text table)")
    p.add_argument("--headline", action="store_true", help="only the metrics the paper reports (and sort accuracy)")
    p.add_argument("--by-method", action="store_true",
                   help="one column per method: mean ± std over its seeds (experiments named <method>-s<seed>)")
    p.add_argument("--results", default="results",
                   help="with --by-method: the results folder whose evaluation JSONs give the intervals")
    add_store_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    uri = args.tracking_uri or tracking.tracking_uri()
    experiment = args.experiment or tracking.experiment_name()
    exps = expand(args.exps, experiment, uri)
    records = tracking.search_stage_runs(exps, None, experiment, uri)
    latest = tracking.pick_latest(records)
    found = {r.exp for r in latest}
    where = f"MLflow experiment {experiment!r} at {uri}"
    for exp in exps:
        if exp not in found:
            print(f"tvts compare: {compare.unknown_exp_message(exp, records, where)}", file=sys.stderr)
    shown = [e for e in exps if e in found]
    if shown:
        table = compare.build_table(latest, shown, headline_only=args.headline)
        if args.by_method:
            print_grouped(compare.group_table(table), args.csv, args.results)
        elif args.csv == "-":
            compare.write_csv(table, "-")
        else:
            print(compare.render_text(table))
            if args.csv:
                compare.write_csv(table, args.csv)
    sys.stdout.flush()
    return 2 if len(shown) < len(exps) else 0


def expand(patterns: list[str], experiment: str, uri: str) -> list[str]:
    """The experiments named, globs expanded against the store (a glob matching none stays, and is
    then reported as unknown); order kept, repeats dropped."""
    known = tracking.list_exps(experiment, uri) if any(set(p) & set("*?[") for p in patterns) else []
    out: list[str] = []
    for p in patterns:
        hits = sorted(fnmatch.filter(known, p), key=compare.natural_key) if set(p) & set("*?[") else []
        out += hits or [p]
    return list(dict.fromkeys(out))


def print_grouped(grouped: compare.GroupedTable, csv_path: str | None, results: str = "results") -> None:
    if csv_path == "-":
        sys.stdout.write(compare.grouped_csv(grouped))
        return
    intervals = compare.GridIntervals(results, grouped.members)
    print(compare.render_grouped_text(grouped, intervals))
    differences = compare.differences_text(grouped, intervals)
    if differences:
        print("\nPaired by seed, 95 % bootstrap interval over test clips; ahead/behind: the interval excludes 0\n")
        print(differences)
    if csv_path:
        io.atomic_write_text(csv_path, compare.grouped_csv(grouped))
