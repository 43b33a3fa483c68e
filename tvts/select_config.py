"""`select:`: which metric picks the checkpoint, and where the winner is registered.

Apart from `tvts.select` (which scores checkpoints with torch) so that the workflow's config
check needs no torch.
"""
from __future__ import annotations

from dataclasses import dataclass

from tvts.config import require

# loss_recon: VideoMAE's; step: the last epoch checkpoint, whatever the val scores (the
# fixed-budget protocol: every method evaluated after the same number of steps)
METRICS = ("sort_exact_argmax", "sort_exact", "sort_acc", "v2t_r1", "t2v_r1", "loss_sort", "loss_align", "loss_recon",
           "step")


@dataclass(frozen=True)
class SelectConfig:
    # sort_exact_argmax: the official validation metric (every position's argmax right). The official
    # config monitors it with `min`, i.e. keeps its *worst* epoch; here the best is kept.
    metric: str = "sort_exact_argmax"
    register: bool = True        # register the winner in the MLflow model registry (alias `best`)
    model_name: str = ""         # registry name; "" = tvts-<exp>
    rescore: bool = False        # score every checkpoint again instead of reusing the trainer's val pass

    def check(self, where: str) -> None:
        require(self.metric in METRICS, where, "metric", f"must be one of {', '.join(METRICS)}")

    @property
    def higher_is_better(self) -> bool:
        return not self.metric.startswith("loss")
