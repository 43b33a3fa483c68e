"""`tvts make-demo`: generate the embedded demo corpus (YT-Temporal, SSV2 and MSR-VTT formats).

The corpus is versioned with DVC; regenerate it with this command, then `dvc add data`
and `dvc push` (see docs/stages.md, "Versioning data (DVC)"). The same seed gives the same bytes.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from tvts import io, tracking
from tvts.config import load_sections
from tvts.data.demo import DemoConfig, generate_demo
from tvts.stages.common import command

log = logging.getLogger("tvts.make_demo")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tvts make-demo", description=__doc__)
    p.add_argument("--config", dest="config_path", default="config/demo.yaml", help="YAML config with a `demo` section")
    p.add_argument("--out", default="data/demo", help="output folder (replaced atomically)")
    p.add_argument("--workers", type=int, default=2, help="processes; the bytes do not depend on it")
    return p


@command(build_parser)
def main(args: argparse.Namespace) -> int:
    cfg = load_sections({"demo": DemoConfig}, args.config_path)["demo"]
    with tracking.stage_run("make_demo", "demo-data", {"demo": cfg, "workers": args.workers}) as run:
        t0 = time.perf_counter()
        summary = generate_demo(Path(args.out), cfg, workers=args.workers)
        run.log_metrics(summary | {"generate_s": time.perf_counter() - t0})
        run.log_artifact(Path(args.out) / "manifest.json")
    log.info("demo corpus in %s after %.1fs: %s", args.out, time.perf_counter() - t0, io.dumps(summary, indent=None))
    return 0
