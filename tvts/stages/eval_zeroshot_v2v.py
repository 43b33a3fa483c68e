"""Stage `eval_zeroshot_v2v`: zero-shot video-to-video retrieval with the frozen final-norm CLS.

Every video of the split (SSV2 validation in the paper) is one query against all the others:
cosine similarity, the query itself excluded, R@K = % of queries with a same-class video in
their top K (ties pessimistic, tvts.eval.metrics). One centre view per video: the model's
num_frames TSN segment centres, short side `eval.zeroshot_v2v.short_side`, centre crop img_size.
Unreadable videos are rejected (counted, listed) and take no part, neither as query nor as target.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tvts import io
from tvts.eval.config import ZeroShotV2VConfig
from tvts.eval.job import eval_stage_run
from tvts.eval.linear import resolve_device
from tvts.eval.zeroshot_job import STAGE, evaluate
from tvts.stages.common import command
from tvts.stages.eval_common import add_feature_args, eval_parser, load_stage_config

log = logging.getLogger("tvts.eval_zeroshot_v2v")


def build_parser() -> argparse.ArgumentParser:
    return eval_parser("tvts eval-zeroshot-v2v", __doc__, "zeroshot_v2v", add_feature_args)


@command(build_parser)
def main(args: argparse.Namespace) -> int:
    spec, views, zs = load_stage_config(args, "zeroshot_v2v", ZeroShotV2VConfig)
    device = resolve_device(args.device)
    with eval_stage_run(STAGE, "zeroshot_v2v", args, spec, views, zs) as mlrun:
        result = evaluate(args, spec, views, zs, device)
        out = Path(args.out)
        io.atomic_write_json(out, result)
        mlrun.log_metrics(result["metrics"] | result["counts"] | result["timings"])
        mlrun.log_artifact(out)
    recalls = " ".join(f"R@{k} {result['metrics'][f'r{k}']:.2f}" for k in zs.ks)
    log.info("%s %s: %s (%d queries)", args.dataset, zs.split, recalls, result["counts"]["n_test"])
    return 0
