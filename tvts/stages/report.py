"""`tvts report --out results/report [--exps A B ...]`: summary.md and plots from the MLflow store.

Writes `<out>/summary.md`, `<out>/pretrain_curves.png`, `<out>/retrieval.png` and
`<out>/classification.png`. The outputs are written even when the store holds no runs
(placeholders, with a warning), so the workflow's report rule always succeeds.
The report only reads the store: it opens no MLflow run of its own.
"""
from __future__ import annotations

import argparse
import sys

from tvts import io, report
from tvts.stages.common import add_store_args


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tvts report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (results/report)")
    p.add_argument("--exps", nargs="+", default=None, metavar="EXP",
                   help="experiments to show, in column order (default: every experiment in the store)")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="also write the report's content as JSON ('-': stdout)")
    p.add_argument("--results", default="results",
                   help="the results folder: the evaluations' JSONs there give the intervals over test clips")
    add_store_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    data = report.collect(args.exps, args.experiment, args.tracking_uri, args.results)
    if not data.latest:
        print(f"tvts report: warning: no finished runs for {data.exps or 'any experiment'} in {data.where}; "
              "writing placeholder outputs", file=sys.stderr)
    for exp in data.exps:
        if not any(r.exp == exp for r in data.latest):
            print(f"tvts report: warning: experiment {exp!r} has no finished runs", file=sys.stderr)
    summary = report.write_report(data, args.out)
    if args.json == "-":
        print(io.dumps(summary))
    elif args.json:
        io.atomic_write_json(args.json, summary)
    print(f"tvts report: wrote {args.out}/{report.SUMMARY} and {', '.join(report.PLOTS)}", file=sys.stderr)
    return 0
