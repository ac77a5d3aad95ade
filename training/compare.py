"""Paired comparison of two evaluations on the same patients: is the candidate better, or is it noise?

Two networks measured on the same held-out patients (``unetpp evaluate --report`` or
``scripts/cv_evaluate.py --report``) differ patient by patient; the mean of those differences is what a
recipe change bought, and its spread says how far that can be trusted. Reported: the mean and median
difference, how many patients each side wins, an exact two-sided sign test and a paired bootstrap interval
of the mean difference (patients resampled).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

#: Differences smaller than this count as ties (the Dice figures are rounded to no better than this).
TIE = 1e-4


def per_patient_dice(report: Mapping[str, Any], result: str = "untuned") -> tuple[str, dict[str, float]]:
    """The per-patient 3-D Dice of the first result in ``report`` whose name starts with ``result``,
    and that result's full name."""
    for name, figures in report.get("results", {}).items():
        if name.startswith(result):
            return name, {str(p): float(d) for p, d in figures["per_patient_dice"].items()}
    names = ", ".join(report.get("results", {})) or "none"
    raise ValueError(f"no result named {result!r}... in the report (it has: {names})")


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided sign test: the chance of a split at least this uneven if either side were as likely
    to win each patient (ties left out)."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired(baseline: Mapping[str, float], candidate: Mapping[str, float], resamples: int = 10_000,
           seed: int = 0) -> dict[str, Any]:
    """Candidate minus baseline, patient by patient; both must name the same patients."""
    if set(baseline) != set(candidate):
        only_b, only_c = sorted(set(baseline) - set(candidate)), sorted(set(candidate) - set(baseline))
        raise ValueError(f"the two evaluations cover different patients (only in the baseline: {only_b[:3]}, "
                         f"only in the candidate: {only_c[:3]})")
    if not baseline:
        raise ValueError("no patients to compare")
    patients = sorted(baseline)
    b = np.array([baseline[p] for p in patients])
    c = np.array([candidate[p] for p in patients])
    d = c - b
    wins, losses = int((d > TIE).sum()), int((d < -TIE).sum())
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(axis=1)
    order = np.argsort(d)
    return {
        "patients": len(patients),
        "baseline_mean": float(b.mean()),
        "candidate_mean": float(c.mean()),
        "mean_difference": float(d.mean()),
        "median_difference": float(np.median(d)),
        "wins": wins,
        "losses": losses,
        "ties": len(d) - wins - losses,
        "sign_test_p": sign_test(wins, losses),
        "bootstrap_95": (float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))),
        "largest_losses": [(patients[i], float(d[i])) for i in order[:3] if d[i] < -TIE],
        "largest_gains": [(patients[i], float(d[i])) for i in order[::-1][:3] if d[i] > TIE],
        "per_patient_difference": {p: float(x) for p, x in zip(patients, d)},
    }


def markdown(comparison: Mapping[str, Any], baseline_name: str, candidate_name: str) -> str:
    """A short markdown summary of :func:`paired`'s result."""
    c = comparison
    lo, hi = c["bootstrap_95"]

    def listed(pairs: list) -> str:
        return ", ".join(f"{p} {x:+.3f}" for p, x in pairs) or "none"

    return "\n".join([
        f"| | {baseline_name} (baseline) | {candidate_name} (candidate) |",
        "|---|---|---|",
        f"| mean patient Dice ({c['patients']} patients) | {c['baseline_mean']:.4f} | {c['candidate_mean']:.4f} |",
        "",
        f"- difference (candidate - baseline): mean **{c['mean_difference']:+.4f}** (paired bootstrap 95 %: "
        f"{lo:+.4f} to {hi:+.4f}), median {c['median_difference']:+.4f}",
        f"- patients better / worse / tied: {c['wins']} / {c['losses']} / {c['ties']} (two-sided sign test "
        f"p = {c['sign_test_p']:.3g})",
        f"- largest gains: {listed(c['largest_gains'])}",
        f"- largest losses: {listed(c['largest_losses'])}",
    ])
