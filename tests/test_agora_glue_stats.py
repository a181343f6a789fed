"""`bort_jax.experiments.agora_glue.stats`: the paired t-interval and the per-arm summary over
seeds, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bort_jax.experiments import agora_glue


def test_paired_interval_by_hand():
    # d = (0.01, 0.03, 0.05): mean 0.03, std 0.02, t_{0.975,2} = 4.303 -> 4.303 * 0.02 / sqrt 3
    mean, half = agora_glue.paired_interval([0.01, 0.03, 0.05])
    assert mean == pytest.approx(0.03) and half == pytest.approx(4.303 * 0.02 / math.sqrt(3))
    assert math.isnan(agora_glue.paired_interval([0.1])[1])


def test_arm_summary_by_hand():
    """Per-arm means, paired intervals against each control, n_new-weighted agreement."""

    def hist(agree_new, synthetic, distinct):
        return [
            {"n_new": n, "labeler_agreement": g, "n_synthetic": 0, "distinct_synthetic": 0}
            for n, g in agree_new
        ] + [{"n_new": 0, "labeler_agreement": math.nan, "n_synthetic": synthetic,
              "distinct_synthetic": distinct}]  # fmt: skip

    def seed(plain, distill, nb, nb_dev, nt):
        return {
            "plain": plain,
            "plain_best_of": None,
            "distill": distill,
            "budget": None,
            "arms": {
                "neighbour": {
                    "agora": nb,
                    "agora_agora_dev": nb_dev,
                    "history": hist([(10, 0.5), (30, 0.9)], 40, 30),
                },
                "nearest_token": {
                    "agora": nt,
                    "agora_agora_dev": nt,
                    "history": hist([(20, 0.25)], 20, 20),
                },
            },
        }

    seeds = [seed(0.70, 0.72, 0.75, 0.80, 0.69), seed(0.60, 0.66, 0.70, 0.70, 0.61)]
    a = agora_glue.arm_summary(seeds, "neighbour")
    assert a["agora_mean"] == pytest.approx(0.725)
    assert a["agora_std"] == pytest.approx(np.std([0.75, 0.70], ddof=1))
    # d_plain = (0.05, 0.10): mean 0.075, half-width 12.706 * sd / sqrt 2
    assert a["ci_plain"][0] == pytest.approx(0.075)
    assert a["ci_plain"][1] == pytest.approx(12.706 * np.std([0.05, 0.10], ddof=1) / math.sqrt(2))
    assert a["ci_distill"][0] == pytest.approx(0.035)  # (0.03 + 0.04) / 2
    assert "ci_budget" not in a and "ci_best_of" not in a  # controls that did not run
    assert a["gap"] == pytest.approx(0.025)  # ((0.80 - 0.75) + 0) / 2
    assert a["labeler_agreement"] == pytest.approx((10 * 0.5 + 30 * 0.9) / 40)
    assert a["synthetic"] == 40 and a["distinct_synthetic"] == 30
    nt = agora_glue.arm_summary(seeds, "nearest_token")
    assert nt["labeler_agreement"] == pytest.approx(0.25) and nt["ci_plain"][0] == pytest.approx(
        0.0
    )
