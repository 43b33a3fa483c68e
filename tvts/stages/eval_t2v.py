"""Stage `eval_t2v`: text-to-video retrieval, zero-shot and after contrastive fine-tuning.

Protocol: tvts.eval.t2v. First the pretrained model is scored on the test split (`zeroshot/*`),
then, with `eval.t2v.epochs` > 0, the whole model is fine-tuned on the train split with the
gathered symmetric InfoNCE and scored again (`finetuned/*`). R@1/5/10 in percent and the
median rank. Runs as one process or under torchrun (DDP); the fine-tuning is resumable from
`--work` (checkpoints every `ckpt_every` steps and at each epoch end; SIGTERM/SIGUSR1 checkpoint
and exit 75; a finished run is only re-evaluated). Rank 0 writes `--out` and logs to MLflow.

    tvts eval-t2v --model results/demo/select/best.pt --dataset msrvtt \\
        --work results/demo/t2v/msrvtt --out results/demo/eval/t2v/msrvtt.json \\
        --exp demo --config-json '{"eval": {...}}'
"""
from __future__ import annotations

import argparse

from tvts.eval.t2v_job import T2VJob
from tvts.stages.common import command
from tvts.stages.eval_common import add_tuning_args, eval_parser, run_tuning


def build_parser() -> argparse.ArgumentParser:
    return eval_parser("tvts eval-t2v", __doc__, "t2v", add_tuning_args,
                       "a retrieval dataset under eval.datasets (e.g. msrvtt)", raw_description=True)


@command(build_parser)
def main(args: argparse.Namespace) -> int:
    return run_tuning(T2VJob, args)
