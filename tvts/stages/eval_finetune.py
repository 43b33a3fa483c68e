"""Stage `eval_finetune`: end-to-end fine-tuning for classification, then the test split's accuracy.

Recipe: tvts.eval.finetune (the paper's AdamW + layer decay + RandAugment protocol by default).
Runs as one process or under torchrun (DDP, one process per GPU; `tvts launch`). Checkpoints go
to `--work` (results/<exp>/finetune/<dataset>/ckpt/): every `ckpt_every` steps and at each epoch
end. SIGTERM/SIGUSR1 checkpoint and exit with 75; rerunning resumes bit-exactly from the newest
checkpoint of the same run key, and a finished run is only re-evaluated. The test split is
scored with `eval.views` temporal x spatial views, logits averaged. Rank 0 writes `--out`
(metrics, counts, rejects, recipe, checkpoint path) and logs to MLflow.

    tvts eval-finetune --model results/demo/select/best.pt --dataset ssv2 \\
        --work results/demo/finetune/ssv2 --out results/demo/eval/finetune/ssv2.json \\
        --exp demo --config-json '{"eval": {...}}'

`--save-model PATH` also writes the fine-tuned encoder in best.pt format (the input checkpoint with
its video weights replaced), for the frozen probes to read: the supervised upper-bound control.
"""
from __future__ import annotations

import argparse

from tvts.eval.finetune_job import FinetuneJob
from tvts.stages.common import command
from tvts.stages.eval_common import add_tuning_args, eval_parser, run_tuning


def add_finetune_args(p: argparse.ArgumentParser, task: str) -> None:
    add_tuning_args(p, task)
    p.add_argument("--save-model", help="also write the fine-tuned encoder as a model checkpoint (best.pt format) "
                   "for the frozen probes, e.g. results/<exp>/finetune/ssv2/model.pt")


def build_parser() -> argparse.ArgumentParser:
    return eval_parser("tvts eval-finetune", __doc__, "finetune", add_finetune_args,
                       "a classification dataset under eval.datasets (e.g. ssv2)", raw_description=True)


@command(build_parser)
def main(args: argparse.Namespace) -> int:
    return run_tuning(FinetuneJob, args)
