"""`tvts tracking {init,start,end}`: the MLflow store and the workflow's parent run.

The Snakefile calls these from `onstart` / `onsuccess` / `onerror`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from tvts import tracking


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tvts tracking", description=__doc__)
    sub = p.add_subparsers(dest="action", required=True)
    sub.add_parser("init", help="create the store and the experiment (runs the schema migration once)")
    start = sub.add_parser("start", help="open a parent run; prints its id")
    start.add_argument("--exp", required=True)
    start.add_argument("--params-json", default="{}")
    start.add_argument("--command", default="")
    end = sub.add_parser("end", help="close a parent run")
    end.add_argument("run_id")
    end.add_argument("--failed", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.action == "init":
        print(tracking.init_store())
    elif args.action == "start":
        # the invocation is the caller, this command exits at once
        print(tracking.start_parent_run(args.exp, json.loads(args.params_json), args.command, owner=os.getppid()))
    else:
        tracking.end_run(args.run_id, ok=not args.failed)
    sys.stdout.flush()
    return 0
