"""Stage `eval_temporal`: temporal-order probes on frozen features (tvts.eval.temporal).

Extracts every clip's features forward and with its frames reversed (one centre view with
`eval.temporal.views: center`, else the eval.views grid), on the final-norm CLS and on the
mean of the patch tokens (`eval.temporal.pools`). Then, per pool, with the linear probe's
protocol (`eval.linear`): the class probe's top-1 and, where the dataset declares
order-reversed class pairs (`eval.datasets.<name>.reversed_pairs`), its within-pair accuracy;
and the arrow-of-time probe, a clip against the same clip reversed (chance 50 %).
Missing and unreadable videos are listed and counted. With --features, the features of each
(split, pool, direction) are cached beside the linear probe's, so a rerun for another
probe setting does not run the encoder again.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tvts import io
from tvts.eval.config import AttentiveConfig, LinearConfig, TemporalConfig, eval_part, load_eval_section
from tvts.eval.job import eval_stage_run
from tvts.eval.health import health_metrics
from tvts.eval.temporal_job import STAGE, TemporalEval
from tvts.stages.common import command
from tvts.stages.eval_common import add_feature_args, eval_parser, load_stage_config

log = logging.getLogger("tvts.eval_temporal")


def build_parser() -> argparse.ArgumentParser:
    return eval_parser("tvts eval-temporal", __doc__, "temporal", add_feature_args)


@command(build_parser)
def main(args: argparse.Namespace) -> int:
    spec, views, cfg = load_stage_config(args, "temporal", TemporalConfig)
    section = load_eval_section(args.config_path, args.config_json)
    lin, att = eval_part(section, "linear", LinearConfig), eval_part(section, "attentive", AttentiveConfig)
    with eval_stage_run(STAGE, "temporal", args, spec, views, {"temporal": cfg, "linear": lin, "attentive": att}) as mlrun:
        result = TemporalEval(args, spec, views, cfg, lin, att).run()
        out = Path(args.out)
        io.atomic_write_json(out, result)
        mlrun.log_metrics(result["metrics"] | result["counts"] | result["timings"] | health_metrics(result["health"]),
                          step=0)
        mlrun.log_artifact(out)
    m = result["metrics"]
    log.info("%s temporal probes: %s (%d train, %d test)", args.dataset,
             " ".join(f"{k} {v:.1f}" for k, v in m.items()), result["counts"]["n_train"], result["counts"]["n_test"])
    return 0
