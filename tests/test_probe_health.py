"""Feature health, the probe's step floor and the per-clip hits that the paired intervals resample."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tvts.eval.config import LinearConfig
from tvts.eval.features import Features
from tvts.eval.health import feature_health
from tvts.eval.linear import probe_epochs, score_probe, train_probe_cached


def test_health_separates_spread_from_collapsed_features():
    rng = np.random.default_rng(0)
    spread = feature_health(rng.normal(size=(2000, 16)))
    assert spread["effective_rank"] > 14 and spread["centred_share"] > 0.95
    # a large common vector plus variation along one direction: what a collapsed readout gives
    collapsed = 5.0 + rng.normal(size=(2000, 1)) * np.eye(16)[0] + 1e-3 * rng.normal(size=(2000, 16))
    health = feature_health(collapsed)
    assert health["effective_rank"] < 1.1 and health["centred_share"] < 0.01
    assert np.isnan(feature_health(np.zeros((1, 4)))["effective_rank"])


def test_health_ignores_unreadable_rows_and_counts_views():
    x = np.random.default_rng(1).normal(size=(10, 3, 8))
    ok = np.array([True] * 5 + [False] * 5)
    assert feature_health(x, ok)["n"] == 15


def test_min_steps_adds_epochs_only_on_small_sets():
    cfg = LinearConfig(batch_size=256, epochs=100, min_steps=2000)
    assert probe_epochs(cfg, 288) == 1000           # 2 steps an epoch
    assert probe_epochs(cfg, 169_000) == 100        # SSV2's size: the official 100 epochs
    assert probe_epochs(dataclasses.replace(cfg, min_steps=0), 288) == 100


def test_unconverged_probe_trains_on_with_a_step_floor():
    rng = np.random.default_rng(2)
    labels = np.arange(288) % 12
    feats = (rng.normal(size=(288, 1, 32)) + 0.4 * np.eye(32)[labels][:, None]).astype(np.float32)
    train = Features(feats, labels, np.ones(288, bool), [""] * 288)
    # at a small lr 200 steps stop far from the optimum; the floor trains on (the loss is convex)
    short = train_probe_cached(train, 12, LinearConfig(lr=0.01, epochs=100, batch_size=256))
    floor = train_probe_cached(train, 12, LinearConfig(lr=0.01, epochs=100, batch_size=256, min_steps=2000))
    assert floor.steps == 2000 and short.steps == 200
    assert floor.losses[-1] < short.losses[-1] - 0.1


def test_per_clip_hits_give_the_metrics_and_mark_unreadable_clips():
    labels = np.array([0, 1, 0, 1])
    feats = np.array([[1.0, 0], [0, 1], [0, 1], [0, 1]], np.float32)[:, None]
    ok = np.array([True, True, True, False])
    test = Features(feats, labels, ok, ["", "", "", "bad"])
    result = train_probe_cached(Features(feats[:2], labels[:2], ok[:2], ["", ""]), 2, LinearConfig(epochs=20))
    metrics, hits = score_probe(result, test, ks=(1,), pairs=[(0, 1)])
    assert list(hits["top1"][:3]) == [1.0, 1.0, 0.0] and np.isnan(hits["top1"][3])
    assert metrics["top1"] == pytest.approx(100 * 2 / 3)
    assert metrics["within_pair_top1"] == pytest.approx(100 * 2 / 3)
    assert torch.isfinite(result.weight).all()
