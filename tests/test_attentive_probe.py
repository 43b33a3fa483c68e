"""The attentive probe reads order from a token grid whose mean pool carries none."""
from __future__ import annotations

import dataclasses

import numpy as np

from tvts.eval.attentive import attentive_logits, train_attentive
from tvts.eval.config import AttentiveConfig, LinearConfig
from tvts.eval.features import Features
from tvts.eval.linear import evaluate_probe, score_logits, train_probe_cached


def _order_world(n: int, seed: int) -> tuple[Features, np.ndarray]:
    """Tokens = position code + content; class 0 shows event A before B, class 1 B before A.
    Both classes hold the same multiset of tokens, so their mean pools are equal in distribution."""
    rng = np.random.default_rng(seed)
    t, c = 9, 16
    pos = np.eye(t, c)                                     # time in dims 0..8
    a, b = np.eye(c)[12] * 3, np.eye(c)[14] * 3            # the two events' content
    labels = np.arange(n) % 2
    tokens = np.repeat(pos[None], n, 0) + 0.1 * rng.normal(size=(n, t, c))
    first, second = rng.integers(1, 4, n), rng.integers(5, 8, n)
    for i, y in enumerate(labels):
        tokens[i, first[i]] += a if y == 0 else b
        tokens[i, second[i]] += b if y == 0 else a
    return Features(tokens[:, None].astype(np.float16), labels, np.ones(n, bool), [""] * n), tokens.mean(1)


def test_attentive_probe_reads_order_that_the_mean_pool_cannot():
    train, train_mean = _order_world(256, 0)
    test, test_mean = _order_world(128, 1)
    probe, losses = train_attentive(train, 2, AttentiveConfig(steps=250, warmup_steps=20, lr=3e-3))
    assert losses[-1] < losses[0]
    accuracy = score_logits(attentive_logits(probe, test.feats), test, ks=(1,))[0]["top1"]
    assert accuracy > 90
    pooled = train_probe_cached(dataclasses.replace(train, feats=train_mean[:, None].astype(np.float32)), 2,
                                LinearConfig(epochs=50))
    mean_pool = evaluate_probe(pooled, dataclasses.replace(test, feats=test_mean[:, None].astype(np.float32)),
                               ks=(1,))["top1"]
    assert mean_pool < 70


def test_attentive_probe_is_a_function_of_its_seed():
    train, _ = _order_world(64, 2)
    cfg = AttentiveConfig(steps=30, warmup_steps=5)
    p1, l1 = train_attentive(train, 2, cfg)
    p2, l2 = train_attentive(train, 2, cfg)
    assert l1 == l2 and all((x == y).all() for x, y in zip(p1.parameters(), p2.parameters()))
