"""`tvts compare EXP_A EXP_B ...`: the experiments' runs side by side, from the MLflow store.

One row per (stage or task, dataset, metric), one column per experiment, and the paper's
number where it reports one. Each cell is the latest FINISHED run of that stage or
evaluation; failed, killed and still-running reruns are ignored. An experiment without
finished runs is named on stderr and the exit status is 2; the others are still printed.
"""
from __future__ import annotations

import argparse
import sys

from tvts import compare, tracking
from tvts.stages.common import add_store_args


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tvts compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("exps", nargs="+", metavar="EXP", help="experiment names (the runs' tvts.exp tag)")
    p.add_argument("--csv", metavar="PATH",
                   help="also write the table as CSV ('-': CSV to stdout instead of the text table)")
    p.add_argument("--headline", action="store_true", help="only the metrics the paper reports (and sort accuracy)")
    add_store_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    exps = list(dict.fromkeys(args.exps))  # keep the order given, drop repeats
    uri = args.tracking_uri or tracking.tracking_uri()
    experiment = args.experiment or tracking.experiment_name()
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
        if args.csv == "-":
            compare.write_csv(table, "-")
        else:
            print(compare.render_text(table))
            if args.csv:
                compare.write_csv(table, args.csv)
    sys.stdout.flush()
    return 2 if len(shown) < len(exps) else 0
