"""Overlap and detection metrics. Empty-vs-empty counts as perfect agreement (Dice = IoU = 1)."""

from __future__ import annotations

import numpy as np


def dice_from_counts(intersection: int, pred: int, truth: int) -> float:
    denom = pred + truth
    return 1.0 if denom == 0 else 2.0 * intersection / denom


def iou_from_counts(intersection: int, pred: int, truth: int) -> float:
    union = pred + truth - intersection
    return 1.0 if union == 0 else intersection / union


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    pred, truth = pred.astype(bool), truth.astype(bool)
    return dice_from_counts(int((pred & truth).sum()), int(pred.sum()), int(truth.sum()))


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    pred, truth = pred.astype(bool), truth.astype(bool)
    return iou_from_counts(int((pred & truth).sum()), int(pred.sum()), int(truth.sum()))


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks); None if one class is absent."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # mid-ranks for ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def confusion(pred: np.ndarray, truth: np.ndarray) -> dict[str, float | int | None]:
    """Slice-level detection counts and rates for boolean decisions."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    tp = int((pred & truth).sum())
    tn = int((~pred & ~truth).sum())
    fp = int((pred & ~truth).sum())
    fn = int((~pred & truth).sum())
    n = tp + tn + fp + fn
    return {
        "tp": tp,
        "tn": tn,
        "fp": fp,
        "fn": fn,
        "accuracy": (tp + tn) / n if n else None,
        "sensitivity": tp / (tp + fn) if tp + fn else None,
        "specificity": tn / (tn + fp) if tn + fp else None,
    }
