"""The statistics of the reproduction verdicts (parity.reproduction), with exact numbers."""

import math

import pytest

from parity import published
from parity.reproduction import (DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Sample,
                                 judge_best, judge_difference, judge_figure, prediction_interval, published_figures,
                                 sample_of, seeds_needed, t_quantile, welch_band)

# Student's t quantiles as printed in t tables (to 15 digits)
T_TABLE = [((0.995, 4), 4.604094871349992), ((0.995, 2), 9.924843200918287), ((0.975, 1), 12.706204736174694),
           ((0.995, 9), 3.249835541592126), ((0.975, 4), 2.7764451051977934), ((0.995, 2.5), 7.163728138948783),
           ((0.9, 30), 1.3104150253913955)]


@pytest.mark.parametrize("args, expected", T_TABLE)
def test_t_quantile_matches_the_tables(args, expected):
    assert t_quantile(*args) == pytest.approx(expected, rel=1e-11)


def test_t_quantile_refuses_what_no_interval_uses():
    for p, df in ((0.3, 4), (1.0, 4), (0.99, 0)):
        with pytest.raises(ValueError):
            t_quantile(p, df)


def test_sample_statistics_and_the_prediction_interval():
    sample = sample_of({0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0, 4: 5.0, 5: math.nan})
    assert (sample.n, sample.mean, sample.min, sample.max, sample.missing) == (5, 3.0, 1.0, 5.0, (5,))
    assert sample.sd == pytest.approx(math.sqrt(2.5), rel=1e-15)
    # 3 +- t(0.995, 4) * sqrt(2.5) * sqrt(1 + 1/5)
    half = 7.97452624004548
    low, high = prediction_interval(sample, 0.99)
    assert (low, high) == (pytest.approx(3 - half, rel=1e-11), pytest.approx(3 + half, rel=1e-11))
    assert judge_figure(sample, 3 + half - 1e-6, 0.99, 3)[0] == REPRODUCED
    verdict, _, why = judge_figure(sample, 3 + half + 1e-6, 0.99, 3)
    assert verdict == NOT_REPRODUCED and why.startswith("outside -4.975..10.97") and "1 seed(s) without" in why
    assert prediction_interval(sample_of({0: 1.0}), 0.99) is None
    same = Sample((0.1, 0.1, 0.1))   # equal values: sd exactly 0, the interval the value itself
    assert same.sd == 0.0 and judge_figure(same, 0.1, 0.99, 3)[0] == REPRODUCED
    assert judge_figure(same, 0.1000001, 0.99, 3)[0] == NOT_REPRODUCED


def test_the_baseline_figures_of_the_issue():
    """5 seeds, test accuracy at epoch 10: 98.54 +- 0.05 against the post's 98.67, and at epoch 1 93.84 +- 0.60
    against 95.53: both inside (t(0.995, 4) = 4.604 makes the band +-5.04 sd with 5 seeds)."""
    for mean, sd, value in ((98.54, 0.05, 98.67), (93.84, 0.60, 95.53)):
        # five values with this mean and sd: mean +- sd * (-a, -b, 0, b, a), a^2 + b^2 = 2 (so that the sd is sd)
        a, b = math.sqrt(1.5), math.sqrt(0.5)
        sample = Sample(tuple(mean + sd * k for k in (-a, -b, 0, b, a)))
        assert sample.sd == pytest.approx(sd, rel=1e-12)
        verdict, (low, high), _ = judge_figure(sample, value, 0.99, 3)
        assert verdict == REPRODUCED
        assert high - mean == pytest.approx(4.604094871349992 * sd * math.sqrt(1.2), rel=1e-11)


def test_fewer_than_the_minimum_seeds_is_inconclusive_whatever_the_difference():
    two = sample_of({0: 97.0, 1: 97.1})
    verdict, interval, why = judge_figure(two, 12.0, 0.99, 3)
    assert verdict == INCONCLUSIVE and why == "2 seed(s), at least 3 needed" and interval is not None
    assert judge_figure(sample_of({0: 97.0}), 12.0, 0.99, 3)[:2] == (INCONCLUSIVE, None)
    assert judge_figure(two, 12.0, 0.99, 2)[0] == NOT_REPRODUCED   # the minimum is the policy's


def test_welch_band_and_the_difference_of_two_sides():
    a, b = Sample((1.0, 2.0, 3.0)), Sample((2.0, 4.0, 6.0))
    band, df = welch_band(a, b, 0.99)
    assert df == pytest.approx(50 / 17, rel=1e-14)                                  # Welch-Satterthwaite
    assert band == pytest.approx(5.958245805147034 * math.sqrt(5 / 3), rel=1e-11)  # t(0.995, 50/17) * se
    verdict, got = judge_difference(a, b, 0.99, 3, floor=0.1)   # |1 - 4| = 3 <= 7.69
    assert verdict == "consistent" and got == pytest.approx(band)
    far = Sample((21.0, 22.0, 23.0))
    assert judge_difference(far, b, 0.99, 3, floor=0.1)[0] == "different"
    assert judge_difference(Sample((1.0, 1.0, 1.0)), Sample((1.05, 1.05, 1.05)), 0.99, 3, floor=0.1) == \
        ("consistent", 0.1)                                                          # no spread: the floor
    assert judge_difference(Sample((1.0, 2.0)), b, 0.99, 3, floor=0.1) == (INCONCLUSIVE, None)


def test_best_setting_claims():
    samples = {"32": Sample((98.9, 99.0, 99.1)), "64": Sample((98.8, 98.9, 99.0)), "512": Sample((98.0, 98.1, 98.2))}
    claim = judge_best(["32"], samples, 0.99, 3)
    assert (claim.verdict, claim.best) == (HOLDS, "32")
    assert "32 − 64 = +0.100 points, within noise" in claim.why
    claim = judge_best(["512"], samples, 0.99, 3)                  # 32 is better beyond noise
    assert (claim.verdict, claim.best) == (DOES_NOT_HOLD, "32")
    assert "32 − 512 = +0.900 points, beyond noise" in claim.why
    assert judge_best(["64"], samples, 0.99, 3).verdict == INCONCLUSIVE   # 32's mean is higher, within noise
    assert judge_best(["64", "32"], samples, 0.99, 3).verdict == HOLDS    # either of two names
    assert judge_best(["32"], {**samples, "64": Sample((99.0,))}, 0.99, 3).verdict == INCONCLUSIVE


def test_seeds_needed_keeps_the_seeds_there():
    assert seeds_needed([0], 3) == "0,1,2,3,4"
    assert seeds_needed([0, 7], 3) == "0,1,2,3,7"
    assert seeds_needed([0, 1, 2, 3, 4, 5], 3) == "0,1,2,3,4,5"
    assert seeds_needed([], 8) == "0,1,2,3,4,5,6,7"


def test_the_published_figures_of_a_run_and_its_headline():
    figures = published_figures(published.find("lenet-99-post/batchsize", "256"))
    assert len(figures) == 44                                   # 4 figures x epochs 0-10
    headline = [f for f in figures if f.headline]
    assert [(f.metric, f.epoch, f.value) for f in headline] == [("test_acc", 10, 98.54)]
    variants = published_figures(published.find("lenet-variants-report/variants", "activation"))
    assert [(f.metric, f.epoch, f.value, f.headline) for f in variants] == [("test_acc", None, 86.93, True)]


def test_a_sweep_file_that_adds_a_schedule_to_the_posts_run_is_not_judged_against_it():
    """The protocol a sweep file declares is taken for the published one, except what the source fixes: a
    file naming the post's figures with a warm-up (or milestones) of its own is another experiment."""
    from fluxlenet.config import PROTOCOL_KEYS, USER_NAMES, RunConfig
    names = {key: USER_NAMES.get(key, key) for key in PROTOCOL_KEYS}
    pub = published.find("lenet-99-post/baseline", "default")
    post = RunConfig(model="lenet5", optimizer="Adam", eta=3e-4, batchsize=128, epochs=10).to_dict()
    assert published.mismatches(pub, post, post, names) == []
    warm = {**post, "warmup_epochs": 1.0}
    assert published.mismatches(pub, warm, warm, names) == ["warmup_epochs 1.0 (published: 0.0)"]
    stepped = {**post, "milestones": [5], "gamma": 0.5}
    assert published.mismatches(pub, stepped, stepped, names) == ["milestones [5] (published: [])"]
