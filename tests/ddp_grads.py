"""Run by test_train.py under torchrun: a few TVTS steps on a fixed batch, sliced by rank.

Writes (rank 0) the per-step mean loss and the first step's gradients, so a 2-process gloo run can
be compared with one process on the combined batch. argv: output path, tests folder, and the
contrastive gather ("exact", the default; "local": the official gather, contrastive loss only).
"""
import sys

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from tvts.models.tvts import LossConfig
from tvts.train import distributed as dist
from tvts.train.config import OptimConfig, PretrainConfig
from tvts.train.pretext import build_optimizer, losses, run_model

sys.path.insert(0, sys.argv[2])
from test_models import TEXTS, TINY_VIDEO, keep_batch, tiny_model  # noqa: E402

from tvts.models.text import load_tokenizer, tokenize  # noqa: E402


def batch(n: int, model) -> dict:
    g = torch.Generator().manual_seed(5)
    tok = load_tokenizer(model.text_spec, 12)
    ids, mask = tokenize(tok, [TEXTS[(i * 7 + j) % 4] + f" {i}" for i in range(n) for j in range(4)])
    order = torch.stack([torch.from_numpy(np.random.default_rng(i).permutation(4)) for i in range(n)])
    return {"frames": torch.randn(n, 3, 8, 32, 32, generator=g), "keep": keep_batch(n, TINY_VIDEO, 0.75),
            "input_ids": ids.view(n, 4, -1), "attention_mask": mask.view(n, 4, -1), "order": order}


def main() -> None:
    # float64, so the comparison can be tight: float32 GEMMs of 4 and 8 rows round differently.
    torch.set_default_dtype(torch.float64)
    env = dist.init_distributed(use_cuda=False)
    model = tiny_model().train()  # seeded: identical on every rank
    gather = sys.argv[3] if len(sys.argv) > 3 else "exact"
    if gather == "local":  # the contrastive term alone (the sort head idles: frozen, so DDP waits for nothing)
        loss = LossConfig(gather_grad="local", sort_weight=0.0)
        model.sort_head.requires_grad_(False)
    else:
        loss = LossConfig(gather_grad="exact")
    cfg = PretrainConfig(loss=loss, optim=OptimConfig(lr=1e-3))
    full = batch(8, model)
    per = 8 // env.world
    mine = {k: v[env.rank * per:(env.rank + 1) * per] for k, v in full.items()}
    engine = DistributedDataParallel(model) if env.world > 1 else model
    opt = build_optimizer(model, cfg)
    steps = []
    for _ in range(3):
        opt.zero_grad()
        parts = losses(run_model(engine, mine), mine["order"], cfg, env)
        parts["loss"].backward()
        steps.append(dist.all_reduce_mean(parts["loss"].detach()).item())
        if not steps[1:]:  # the first step's gradients: both runs start from the same weights
            grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
        opt.step()
    if env.is_main:
        torch.save({"losses": steps, "grads": grads}, sys.argv[1])
    dist.cleanup()


if __name__ == "__main__":
    main()
