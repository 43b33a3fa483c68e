"""Stage `eval_linear`: linear probe on the frozen final-norm CLS (protocol: tvts.eval.linear).

Extracts (or loads from the feature cache) the train split's training views and the test
split's 2 x 3 test views, trains Linear(C -> classes) on the train features and reports the
top-1/top-5 accuracy of the view-averaged logits on the test split. With
`eval.linear.mode: uncached` the encoder runs on every batch of every epoch instead (same
result; for timing the cache). Missing and unreadable videos are listed and counted.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tvts import io
from tvts.eval.config import LinearConfig
from tvts.eval.health import health_metrics
from tvts.eval.job import eval_stage_run
from tvts.eval.linear_job import STAGE, LinearEval
from tvts.stages.common import command
from tvts.stages.eval_common import add_feature_args, eval_parser, load_stage_config

log = logging.getLogger("tvts.eval_linear")


def build_parser() -> argparse.ArgumentParser:
    return eval_parser("tvts eval-linear", __doc__, "linear", add_feature_args)


@command(build_parser)
def main(args: argparse.Namespace) -> int:
    spec, views, lin = load_stage_config(args, "linear", LinearConfig)
    with eval_stage_run(STAGE, "linear", args, spec, views, lin) as mlrun:
        result = LinearEval(args, spec, views, lin).run()
        out = Path(args.out)
        io.atomic_write_json(out, result)
        mlrun.log_metrics(result["metrics"] | result["counts"] | result["timings"] | health_metrics(result["health"]),
                          step=0)
        for epoch, loss in enumerate(result["losses"]):
            mlrun.log_metrics({"train/loss": loss}, step=epoch)
        mlrun.log_artifact(out)
    m = result["metrics"]
    log.info("%s linear probe: top-1 %.2f top-5 %.2f (%d train, %d test)", args.dataset, m["top1"], m["top5"],
             result["counts"]["n_train"], result["counts"]["n_test"])
    return 0
