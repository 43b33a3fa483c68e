"""Feature health: does a frozen representation vary enough for a probe to read anything?

A probe can only be as good as the spread of the features it is given. Two numbers say how
much spread there is, on the readable training rows:

- **centred share**: the variance about the mean over the mean squared norm,
  trace(Cov) / E||x||^2. Near 0, every clip maps to nearly the same vector (a large common
  component, e.g. what a final LayerNorm's bias or a dominant position embedding leaves).
- **effective rank** (Roy & Vetterli 2007): exp of the entropy of the covariance's normalised
  eigenvalues. 1 when all the variance lies along one direction; C when it is spread evenly
  over all C dimensions. A linear readout of K classes needs at least K - 1 useful directions.

The probe's accuracy on its own training clips goes beside its test accuracy: a probe that does
not fit its training set says the readout, not generalisation, is the bottleneck.
"""
from __future__ import annotations

import numpy as np


def feature_health(feats: np.ndarray, ok: np.ndarray | None = None) -> dict[str, float]:
    """Centred share and effective rank of feature rows.

    Args:
        feats: (N, C) or (N, V, C); views count as rows.
        ok: (N,) bool, the readable rows (all when None).
    Returns:
        {"centred_share": in [0, 1], "effective_rank": in [1, C], "n": rows used}; nan when < 2 rows.
    """
    x = np.asarray(feats, np.float64)
    if ok is not None:
        x = x[np.asarray(ok, bool)]
    x = x.reshape(-1, x.shape[-1])
    if len(x) < 2:
        return {"centred_share": float("nan"), "effective_rank": float("nan"), "n": int(len(x))}
    centred = x - x.mean(0)
    second_moment = float((x * x).sum(1).mean())
    eig = np.clip(np.linalg.eigvalsh(centred.T @ centred / len(x)), 0.0, None)
    total = float(eig.sum())
    if total <= 0.0:
        return {"centred_share": 0.0, "effective_rank": 1.0, "n": int(len(x))}
    p = eig[eig > 0] / total
    return {"centred_share": total / second_moment if second_moment > 0 else 0.0,
            "effective_rank": float(np.exp(-(p * np.log(p)).sum())), "n": int(len(x))}


def health_metrics(health: dict, prefix: str = "health") -> dict[str, float]:
    """A (nested) health dict as flat MLflow metrics: {"cls": {"effective_rank": r}} -> {"health/cls/effective_rank": r}."""
    flat: dict[str, float] = {}
    for name, value in health.items():
        if isinstance(value, dict):
            flat |= health_metrics(value, f"{prefix}/{name}")
        elif isinstance(value, (int, float)):
            flat[f"{prefix}/{name}"] = float(value)
    return flat
