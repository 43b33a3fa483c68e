"""Evaluation metrics on hand-computed cases: ties (pessimistic), self-only classes, MedR, view averaging."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tvts.eval.metrics import average_views, t2v_metrics, t2v_ranks, topk_accuracy, v2v_ranks, v2v_recall


def test_v2v_recall_excludes_the_query_and_misses_a_class_of_one():
    feats = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.0]])
    labels = np.array([0, 0, 1, 1, 2])   # video 4 is alone in its class: only itself would match
    assert v2v_ranks(feats, labels).tolist() == [1, 1, 1, 1, float("inf")]
    assert v2v_recall(feats, labels) == pytest.approx({"r1": 80.0, "r5": 80.0, "r10": 80.0})


def test_v2v_ties_count_against_the_query_whatever_the_order():
    # Query 0 sees video 1 (same class) and video 2 (other class) both at cosine 0: the
    # different-class one ranks first, so the match is at rank 2; same for query 1 with video 3.
    feats = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [-1.0, 0.0]])
    labels = np.array([0, 0, 1, 2])
    assert v2v_ranks(feats, labels).tolist() == [2, 2, float("inf"), float("inf")]
    assert v2v_recall(feats, labels) == pytest.approx({"r1": 0.0, "r5": 50.0, "r10": 50.0})
    perm = np.array([2, 3, 1, 0])  # reordering the videos changes nothing
    assert v2v_ranks(feats[perm], labels[perm]).tolist() == v2v_ranks(feats, labels)[perm].tolist()


def test_v2v_chunked_equals_one_block_and_scale_is_ignored():
    rng = np.random.default_rng(0)
    feats, labels = rng.normal(size=(50, 8)), rng.integers(0, 5, 50)
    full = v2v_ranks(feats, labels, chunk=1024)
    assert torch.equal(full, v2v_ranks(feats * 3.0, labels, chunk=7))


def test_v2v_collapsed_features_get_the_worst_rank():
    # Every similarity ties: each query's one match ranks after its 4 different-class ties (rank 5),
    # where an optimistic rule would give R@1 = 100.
    feats, labels = np.ones((6, 4)), np.array([0, 0, 1, 1, 2, 2])
    assert v2v_ranks(feats, labels).tolist() == [5.0] * 6
    assert v2v_recall(feats, labels, ks=(1, 4, 5)) == {"r1": 0.0, "r4": 0.0, "r5": 100.0}


def test_t2v_ranks_medr_meanr_and_ties():
    sim = np.array([[0.9, 0.1, 0.2],
                    [0.5, 0.5, 0.1],     # ties with video 0: pessimistic rank 2
                    [0.3, 0.8, 0.1],
                    [0.1, 0.2, 0.3]])
    gt = np.array([0, 1, 2, 0])
    assert t2v_ranks(sim, gt).tolist() == [1, 2, 3, 3]
    m = t2v_metrics(sim, gt)
    assert m == pytest.approx({"r1": 25.0, "r5": 100.0, "r10": 100.0, "medr": 2.5, "meanr": 2.25})
    assert t2v_metrics(sim[:3], gt[:3])["medr"] == 2.0


def test_topk_accuracy_ties_and_few_classes():
    logits = torch.tensor([[1.0, 2.0, 3.0], [3.0, 3.0, 0.0], [0.0, 1.0, 2.0]])
    labels = torch.tensor([2, 1, 0])
    # row 1 ties with class 0: not top-1; row 2 is last of 3 classes: within top-5 (only 3 classes)
    assert topk_accuracy(logits, labels, ks=(1, 2, 5)) == pytest.approx(
        {"top1": 100 / 3, "top2": 200 / 3, "top5": 100.0})


def test_average_views_averages_logits_not_votes():
    # view 0 strongly prefers class 0, views 1 and 2 weakly prefer class 1: the logit mean picks class 0
    logits = np.array([[[9.0, 0.0], [0.0, 1.0], [0.0, 1.0]]])
    avg = average_views(logits)
    assert avg.shape == (1, 2) and avg[0].tolist() == pytest.approx([3.0, 2.0 / 3.0])
    assert topk_accuracy(avg, np.array([0]), ks=(1,)) == {"top1": 100.0}
