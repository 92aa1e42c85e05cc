"""The thrashing-point rule (analysis.knee) on synthetic sweeps.

Shapes follow ../shared/docs/local-vm-notes.md: in memory, millions of
accesses/s noisy by 2-3x with about ten major faults per 20 s run (0.5/s);
thrashing, thousands of accesses/s and hundreds to thousands of major faults/s.
"""
import random

import pytest

from analysis.knee import (COLLAPSE_FRACTION, FAULT_FACTOR, FAULT_FLOOR_PER_S, RULE, Sample,
                           find_knee, repeat_thrashes)

IN_MEMORY_FAULTS = 0.5          # ~10 major faults in a 20 s run


def fits(thr):
    return (thr, IN_MEMORY_FAULTS)


def thrash(thr=7_000, faults=1_500.0):
    return (thr, faults)


def test_noisy_in_memory_sweep_has_no_knee():
    rng = random.Random(423)
    sweep = {n: [fits(rng.uniform(4.8e6, 32e6)) for _ in range(3)] for n in range(1, 15)}
    # the measured dip: 9.8M against a best of 23M with only 13 major faults (0.6/s)
    sweep[6] = [(9.8e6, 0.6), (9.9e6, 0.5), (23e6, 0.4)]
    # and a whole N whose median is far below half of the smaller N's (a 3x slump, no paging)
    sweep[9] = [fits(2.0e6), fits(2.5e6), fits(3.0e6)]
    k = find_knee(sweep)
    assert k.n is None
    assert not any(p.thrashes for p in k.points)
    assert k.anomalies == [] and k.notes == []


def test_collapse_without_major_faults_is_not_a_knee():
    sweep = {1: [fits(10e6)], 2: [fits(10e6)], 3: [fits(0.5e6)], 4: [fits(0.4e6)]}
    assert find_knee(sweep).n is None


def test_flat_sweep_has_no_knee():
    k = find_knee({n: [fits(10e6), fits(10e6)] for n in (1, 2, 4, 8, 16)})
    assert k.n is None
    assert [p.n for p in k.points] == [1, 2, 4, 8, 16]
    assert all(p.votes == 0 for p in k.points)


def test_knee_in_the_middle_and_the_baselines():
    sweep = {1: [fits(6e6), fits(5.9e6)], 2: [fits(12e6), fits(8e6)],
             3: [thrash(9_000, 750), thrash(7_500, 700)], 4: [thrash(5_000, 950), thrash(6_000, 1_000)]}
    k = find_knee(sweep)
    assert k.n == 3
    p = k.point(3)
    assert p.baseline_throughput == pytest.approx((5.95e6 + 10e6) / 2)
    assert p.fault_threshold == FAULT_FLOOR_PER_S
    assert p.votes_text == "2/2"


def test_knee_at_the_first_n():
    sweep = {2: [thrash(6_000, 2_000), thrash(5_000, 2_100)], 4: [thrash(3_000, 2_400)],
             6: [thrash(2_500, 2_300)]}
    k = find_knee(sweep)
    assert k.n == 2
    assert k.point(2).baseline_throughput is None


def test_first_n_with_some_faults_but_in_memory_speed_is_not_a_knee():
    # 60 major faults/s is above the floor, but 60 / 5M accesses is far from paging-bound
    sweep = {1: [(5e6, 60.0)], 2: [fits(9e6)], 3: [thrash()]}
    assert find_knee(sweep).n == 3


def test_knee_at_the_last_n():
    sweep = {n: [fits(8e6 + n * 1e5), fits(7e6)] for n in range(1, 8)}
    sweep[8] = [thrash(), thrash()]
    k = find_knee(sweep)
    assert k.n == 8
    assert k.anomalies == []


def test_paging_onset_without_collapse_waits_for_the_collapse():
    # 320 MiB VM: N=8 still 10.1M/s with 1.0k major faults (40/s); N=10 0.95M/s and 20k (800/s)
    sweep = {n: [fits(12e6), fits(15e6)] for n in range(1, 8)}
    sweep[8] = [(10.1e6, 40.0), (11e6, 45.0)]
    sweep[9] = [(7e6, 300.0), (8e6, 250.0)]     # faults high, throughput not yet halved
    sweep[10] = [(0.95e6, 800.0), (1.1e6, 700.0)]
    assert find_knee(sweep).n == 10


def test_faults_are_judged_against_the_in_memory_baseline():
    # a machine that always takes ~10 major faults/s: 20x that is needed, 150/s is not enough
    base = 10.0
    sweep = {1: [(8e6, base)], 2: [(9e6, base)], 3: [(3e6, 150.0)], 4: [(5_000, 900.0)]}
    k = find_knee(sweep)
    assert k.point(3).fault_threshold == FAULT_FACTOR * base
    assert not k.point(3).thrashes
    assert k.n == 4


def test_one_collapsed_repeat_of_three_is_a_minority():
    sweep = {n: [fits(10e6)] * 3 for n in (1, 2, 3)}
    sweep[4] = [fits(11e6), thrash(), fits(9e6)]
    sweep[5] = [thrash(), thrash(), thrash()]
    k = find_knee(sweep)
    assert k.n == 5
    assert k.point(4).votes_text == "1/3" and not k.point(4).thrashes
    assert "N=4: 1 of 3 repeats thrashed (a minority: N does not thrash)" in k.notes


def test_two_collapsed_repeats_of_three_are_the_knee():
    sweep = {n: [fits(10e6)] * 3 for n in (1, 2, 3)}
    sweep[4] = [thrash(), fits(9e6), thrash()]
    sweep[5] = [thrash()] * 3
    k = find_knee(sweep)
    assert k.n == 4
    assert k.notes == ["N=4: 2 of 3 repeats thrashed (at least half: N thrashes)"]


def test_a_tie_between_two_repeats_counts_as_thrashing():
    sweep = {1: [fits(10e6)] * 2, 2: [fits(10e6)] * 2, 3: [fits(10e6), thrash()], 4: [thrash()] * 2}
    k = find_knee(sweep)
    assert k.n == 3
    assert k.point(3).votes_text == "1/2"


def test_isolated_thrashing_n_followed_by_an_in_memory_one_is_an_anomaly():
    sweep = {1: [fits(10e6)], 2: [fits(10e6)], 3: [thrash()], 4: [fits(11e6)],
             5: [thrash()], 6: [thrash()]}
    k = find_knee(sweep)
    assert k.n == 5
    assert k.anomalies == [3]
    assert any("N=3: thrashed but N=4 is back in memory" in n for n in k.notes)


def test_anomaly_at_the_end_of_an_otherwise_healthy_sweep_gives_no_knee():
    sweep = {1: [fits(10e6)], 2: [thrash()], 3: [fits(10e6)], 4: [fits(9e6)]}
    k = find_knee(sweep)
    assert k.n is None
    assert k.anomalies == [2]


def test_zero_throughput_with_paging_is_a_collapse():
    sweep = {1: [fits(10e6)], 2: [(0.0, 2_000.0)]}
    assert find_knee(sweep).n == 2
    assert find_knee({1: [(0.0, 2_000.0)]}).n == 1


def test_input_order_empty_ns_and_plain_tuples():
    sweep = {8: [Sample(5_000, 1_000)], 1: [Sample(9e6, 0.5)], 3: [], 2: [(8e6, 0.4)]}
    k = find_knee(sweep)
    assert [p.n for p in k.points] == [1, 2, 8]
    assert k.n == 8


def test_repeat_rule_thresholds():
    assert repeat_thrashes(Sample(COLLAPSE_FRACTION * 10e6 - 1, 51.0), 10e6, 50.0)
    assert not repeat_thrashes(Sample(COLLAPSE_FRACTION * 10e6, 51.0), 10e6, 50.0)
    assert not repeat_thrashes(Sample(1.0, 50.0), 10e6, 50.0)


def test_rule_text_is_the_documented_one():
    assert "(a) paging:   F > max(50/s, 20 x F0)" in RULE
    assert "(b) collapse: T < 0.5 x T0" in RULE
    assert "at least half of its repeats" in RULE


def test_sweep_shown_as_ranges():
    from analysis.tables import ranges
    assert ranges([1, 2, 3, 5, 7, 8, 9]) == "1-3,5,7-9"
    assert ranges([4, 1, 2]) == "1,2,4"
    assert ranges([1, 2, 4, 6, 8]) == "1,2,4,6,8"
