"""The thrashing-point rule (analysis.knee) on synthetic and measured sweeps.

Shapes follow ../shared/docs/local-vm-notes.md and docs/cases.md: in memory,
millions of accesses/s noisy by 2-3x with a few major faults per run (0.5/s);
past the available memory Linux thrashes unfairly: some processes starve at
100-3000 accesses/s with thousands of major faults while the others keep
their speed, so the sum may hardly move; deeper, the sum collapses too.
"""
import json
import random
from pathlib import Path

import pytest

from analysis.knee import (COLLAPSE_FRACTION, FAULT_FACTOR, FAULT_FLOOR_PER_S, IN_MEMORY_FLOOR, RULE,
                           STARVED_FRACTION, Sample, find_knee, in_memory_allowance, judge, ran_in_memory,
                           repeat_thrashes, sample)

IN_MEMORY_FAULTS = 0.5          # ~10 major faults in a 20 s run
PAGES = 9216                    # a 36 MiB process in 4 KiB pages
MEASURED = Path(__file__).resolve().parent / "fixtures" / "measured-sweeps.json"


def fits(thr):
    return (thr, IN_MEMORY_FAULTS)


def thrash(thr=7_000, faults=1_500.0):
    return (thr, faults)


def procs(speeds, majflts, wall=15.0):
    """A run from its processes' accesses/s and major faults (36 MiB each)."""
    return sample(speeds, majflts, wall, PAGES)


def in_memory(n, each, wall=12.0):
    return procs([each] * n, [2] + [0] * (n - 1), wall)


# --------------------------------------------------------------------------- in memory: no knee

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


def test_noisy_in_memory_processes_have_no_knee():
    """Per-process speeds noisy by 3x between runs and 1.5x within one, sharing one CPU
    (each gets ~T/N), a process 40x below the N=1 one at N=17: nothing starves, no knee."""
    rng = random.Random(7)
    sweep = {}
    for n in (1, 2, 4, 6, 10, 12, 17):
        runs = []
        for _ in range(3):
            total = rng.uniform(1.5e6, 5e6)
            speeds = [total / n * rng.uniform(0.7, 1.05) for _ in range(n)]
            runs.append(procs(speeds, [2] + [0] * (n - 1), wall=8 + 1.5 * n))
        sweep[n] = runs
    k = find_knee(sweep)
    assert k.n is None and k.notes == []
    assert all(p.in_memory == 3 and all(v.starved == 0 for v in p.verdicts) for p in k.points)


def test_slow_processes_without_major_faults_are_not_a_knee():
    sweep = {1: [in_memory(1, 5e6)], 3: [in_memory(3, 1e6)],
             4: [procs([1e6, 1e6, 1e6, 2_000], [2, 0, 0, 10])]}     # 500x slower, but not paging
    k = find_knee(sweep)
    assert k.n is None
    assert k.point(4).verdicts[0].starved == 1 and not k.point(4).verdicts[0].paging


def test_collapse_without_major_faults_is_not_a_knee():
    sweep = {1: [fits(10e6)], 2: [fits(10e6)], 3: [fits(0.5e6)], 4: [fits(0.4e6)]}
    assert find_knee(sweep).n is None


def test_flat_sweep_has_no_knee():
    k = find_knee({n: [fits(10e6), fits(10e6)] for n in (1, 2, 4, 8, 16)})
    assert k.onset is None
    assert k.n is None
    assert [p.n for p in k.points] == [1, 2, 4, 8, 16]
    assert all(p.votes == 0 for p in k.points)


def test_fair_share_keeps_many_in_memory_processes_from_looking_starved():
    # 17 processes sharing the CPU at 150k each: 1/17 of an N=2 process, but
    # E(17) = min(P0, T0/17) = 294k, so nothing starves, even while paging lightly
    sweep = {1: [in_memory(1, 12e6)], 2: [in_memory(2, 2.5e6)],
             17: [procs([1.5e5] * 17, [40] * 17, wall=12.0)]}
    k = find_knee(sweep)
    p = k.point(17)
    assert p.expected_process == pytest.approx(5e6 / 17)
    assert p.verdicts[0].paging and p.verdicts[0].starved == 0
    assert k.n is None
    assert k.notes == ["N=17: paging (56.7 major faults/s > 50.0/s) but progress did not collapse: "
                       "not the knee"]     # 40 faults each is within the allowance: still in memory


# --------------------------------------------------------------------------- unfair thrashing

def test_unfair_thrashing_sum_flat_some_starve_is_the_knee():
    """The 512 MiB VM's shape: past memory 1-3 processes starve, the sum stays high."""
    sweep = {1: [in_memory(1, 2.3e6)], 6: [in_memory(6, 2.5e5)], 10: [in_memory(10, 2.2e5)],
             11: [procs([2_700] + [3.5e5] * 10, [1_300, 80] + [3] * 9, wall=14.6)],
             12: [procs([230, 470, 1_400] + [1.3e5] * 9, [1_650, 1_120, 980] + [4] * 9, wall=22.9)],
             17: [procs([210] * 8 + [1.6e5] * 9, [1_600] * 8 + [5] * 9, wall=38.0)]}
    k = find_knee(sweep)
    assert k.n == 11
    p = k.point(11)
    assert p.throughput > p.baseline_throughput      # the sum is the highest of the sweep
    assert p.starved == 1 and p.slowest == 2_700 and p.reasons == ["starved"]
    assert p.baseline.ns == (6, 10)          # N=1 is no speed baseline
    assert p.starved_threshold == pytest.approx(STARVED_FRACTION * min(p.baseline.process_throughput,
                                                                       p.baseline_throughput / 11))
    assert k.point(17).starved == 8
    assert k.notes == []


def test_baseline_leaves_out_a_smaller_n_that_already_paged():
    """The 256 MiB VM: N=4 refaults 2k pages at full speed (paging by (a), no collapse).
    In the baseline it would raise F0 to 117/s and the threshold to 2.3k/s: no knee."""
    n1, n4 = in_memory(1, 4.83e6, wall=9.4), procs([4.6e5, 6.9e5, 7.8e5, 6.3e5], [2_194, 119, 9, 5], wall=10.0)
    n5 = procs([582, 2_650, 1_510, 3_690, 6.9e5], [2_952, 2_247, 2_700, 2_108, 3], wall=12.0)
    k = find_knee({1: [n1], 4: [n4], 5: [n5]})
    assert not n4.ran_in_memory and n4.majflt_per_s > FAULT_FLOOR_PER_S
    assert k.point(5).baseline.ns == (1,)
    assert k.point(5).baseline_majflt_per_s == pytest.approx(2 / 9.4)
    assert k.point(5).fault_threshold == FAULT_FLOOR_PER_S
    assert k.n == 5
    assert k.notes == ["N=4: paging (232.7 major faults/s > 50.0/s) but progress did not collapse: not the knee; "
                       "left out of the larger N's baselines",
                       "N=4, 5: paging, and no smaller N >= 2 ran in memory: judged without a speed baseline "
                       "(N=1 gives only the fault rate F0)"]
    # without a speed baseline N=5 is judged against its own fastest process (690k / 20)
    assert k.point(5).reason_details()[-1] == {"test": "starved", "value": 582.0, "limit": 34_500.0,
                                               "margin": 59.28, "processes": 4, "against": "fastest/20"}
    assert k.after == 4
    # paging began at N=4 (the onset), the collapse one N later (N*)
    assert k.onset == 4
    # the same N=4 taken as in memory would have hidden the knee (what the sum-only rule's baseline did)
    trusted = Sample(n4.throughput, n4.majflt_per_s, n4.processes, in_memory=True)
    assert find_knee({1: [n1], 4: [trusted], 5: [n5]}).n is None


def test_no_in_memory_run_at_smaller_n_falls_back_to_the_run_itself():
    # the first N already starves one process against the others of its own run
    k = find_knee({3: [procs([3e6, 2.8e6, 800], [2, 5, 4_000], wall=20.0)]})
    assert k.n == 3 and k.point(3).starved_threshold is None
    assert k.point(3).verdicts[0].starved == 1
    # paging at full speed, no process behind: neither paging-bound nor starved
    k = find_knee({3: [procs([3e6, 2.8e6, 2.9e6], [2, 5, 4_000], wall=20.0)]})
    assert k.n is None


def test_sum_collapse_still_counts():
    sweep = {1: [fits(6e6), fits(5.9e6)], 2: [fits(12e6), fits(8e6)],
             3: [thrash(9_000, 750), thrash(7_500, 700)], 4: [thrash(5_000, 950), thrash(6_000, 1_000)]}
    k = find_knee(sweep)
    assert k.n == 3
    p = k.point(3)
    assert p.baseline_throughput == pytest.approx(10e6)      # N=2's median; N=1 is no speed baseline
    assert p.baseline.ns == (2,)
    assert p.fault_threshold == FAULT_FLOOR_PER_S
    assert p.votes_text == "2/2" and p.reasons == ["sum"] and p.starved is None


def _measured():
    data = json.loads(MEASURED.read_text())["runs"]
    for run_id, machines in data.items():
        for machine, m in machines.items():
            sweep = {int(n): [sample(speeds, majflts, wall, m["work_mb"] * 256)]
                     for n, (wall, speeds, majflts) in m["sweep"].items()}
            yield run_id, machine, m["mem_available_kb"] / 1024 / m["work_mb"], sweep


@pytest.mark.parametrize("run_id,machine,predicted,sweep", list(_measured()),
                         ids=[f"{r}-{m}" for r, m, _, _ in _measured()])
def test_measured_sweeps_knee_at_the_first_starving_n(run_id, machine, predicted, sweep):
    """Four full runs of the default lab: the knee is 5 on the 256 MiB VM (predicted 4.1-4.3) and
    11 on the 512 MiB VM (predicted 10.9-11.1) every time: the first N with a starved process."""
    k = find_knee(sweep)
    assert k.n == {"small": 5, "large": 11}[machine]
    assert abs(k.n - predicted) < 1
    assert k.anomalies == []
    p = k.point(k.n)
    assert "starved" in p.reasons
    # margins: the slowest process far under the threshold, every in-memory process far above it
    # (measured: 0.0007-0.0195 x E(N) against 0.66 x E(N) and more)
    assert p.slowest < p.starved_threshold / 2.5
    for q in k.points:
        if q.starved_threshold is not None and q.in_memory:
            assert min(s for s in sweep[q.n][0].processes) > 10 * q.starved_threshold
    assert k.after == max(n for n in sweep if n < k.n)
    # the onset: the first N that paged (test (a)), never after N*
    assert k.onset <= k.n and all(2 * q.paging_votes < q.repeats for q in k.points if q.n < k.onset)
    assert [d["test"] for d in p.reason_details()][0] == "paging" and p.reason_details()[-1]["test"] == "starved"
    # with 1/100 instead of 1/20 the knee of run 000928's and 001452's large VM would have been missed
    if machine == "large" and run_id in ("20261126-000928-case2", "20261126-001452-case2"):
        assert p.slowest > p.expected_process / 100


@pytest.mark.parametrize("factor", [3.0, 1 / 3])
def test_measured_knee_does_not_depend_on_how_fast_n1_runs(factor):
    """Issue 16: N=1 runs 2-3x faster in total than any N >= 2 under TCG; a run whose N=1 is
    three times faster (or slower) must give the same N* and the same verdict at every N."""
    for run_id, machine, _, sweep in _measured():
        scaled = dict(sweep)
        one = sweep[1][0]
        scaled[1] = [Sample(one.throughput * factor, one.majflt_per_s,
                            tuple(p * factor for p in one.processes), one.in_memory)]
        before, after = find_knee(sweep), find_knee(scaled)
        assert after.n == before.n, (run_id, machine)
        assert [(p.n, p.votes) for p in after.points] == [(p.n, p.votes) for p in before.points]


def test_n1_alone_is_no_speed_baseline():
    """The issue's run: N=1 at 10.6M, N=3 at 3.5M in memory, N=4 at 91% of N=3 with a paging
    process and none starved.  With T0 from N=1 and N=3 (7.05M) the sum test fired (3.2M < 3.5M)."""
    sweep = {1: [in_memory(1, 10.6e6)], 3: [in_memory(3, 3.5e6 / 3)],
             4: [procs([0.48e6, 0.9e6, 0.9e6, 0.9e6], [1_500, 5, 3, 0])],
             5: [procs([600, 1.5e3, 1.2e6, 1.2e6, 1.2e6], [2_500, 2_300, 4, 3, 0])]}
    k = find_knee(sweep)
    assert k.point(4).baseline.ns == (3,) and k.point(4).baseline_throughput == pytest.approx(3.5e6)
    assert k.point(4).verdicts[0].paging and not k.point(4).thrashes and k.n == 5
    assert k.point(4).throughput < COLLAPSE_FRACTION * (10.6e6 + 3.5e6) / 2    # the old T0's verdict
    assert (k.after, k.point(5).baseline.ns) == (4, (3,))


def test_knee_is_an_interval_where_the_sweep_has_gaps():
    sweep = {n: [in_memory(n, 1e6)] for n in (2, 6, 10, 18)}
    sweep[20] = [procs([300] * 4 + [1e6] * 16, [2_000] * 4 + [2] * 16, wall=20.0)]
    k = find_knee(sweep)
    assert (k.after, k.n) == (18, 20)
    sweep[1] = [procs([300], [2_000], wall=20.0)]       # the first N thrashes: nothing below it
    assert find_knee({1: sweep[1], 2: [procs([200, 300], [2_000, 2_000], wall=20.0)]}).after is None
    assert find_knee({n: [in_memory(n, 1e6)] for n in (1, 2)}).after is None


def test_reasons_say_which_test_fired_and_by_what_margin():
    sweep = {1: [fits(6e6)], 2: [fits(10e6)], 3: [fits(8e6)], 4: [thrash(2_000, 500.0)] * 2}
    p = find_knee(sweep).point(4)
    assert p.reason_details() == [
        {"test": "paging", "value": 500.0, "limit": 50.0, "margin": 10.0},
        {"test": "sum", "value": 2_000, "limit": 4.5e6, "margin": 2250.0}]
    assert p.reasons_text() == ("paging 500.0 major faults/s > 50.0/s (10x); "
                                "sum 2k accesses/s < 0.5 x T0 = 4.5M (2.25e+03x)")
    # without a speed baseline: paging-bound
    q = find_knee({2: [thrash(1_000, 200.0)]}).point(2)
    assert q.reason_details()[1] == {"test": "paging_bound", "value": 0.2, "limit": 1e-3, "margin": 200.0}
    assert find_knee({1: [fits(6e6)]}).point(1).reason_details() == []
    # no access at all: the margin is unbounded, given as None (JSON has no infinity)
    z = find_knee({1: [fits(6e6)], 2: [fits(8e6)], 3: [(0.0, 2_000.0)]}).point(3).reason_details()
    assert z[1] == {"test": "sum", "value": 0.0, "limit": 4e6, "margin": None}
    z = find_knee({1: [(0.0, 2_000.0)]}).point(1).reason_details()
    assert z[1]["test"] == "paging_bound" and z[1]["margin"] is None


# --------------------------------------------------------------------------- where the knee falls

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
    k = find_knee(sweep)
    assert k.n == 10
    assert k.point(10).baseline.ns == tuple(range(2, 8))     # N=8 and N=9 paged: not in the baseline


def test_faults_are_judged_against_the_in_memory_baseline():
    # in-memory runs that take ~10 major faults/s (short runs, a slow disk), each process within
    # its allowance: 20x that rate is needed for (a), 150/s is not enough
    base = 10.0
    sweep = {1: [Sample(8e6, base, (8e6,), True)], 2: [Sample(9e6, base, (4.5e6, 4.5e6), True)],
             3: [Sample(3e6, 150.0, (1e6, 1e6, 1e6), False)],
             4: [Sample(9e6, 900.0, (3e6, 3e6, 3e6, 1_000), False)]}
    k = find_knee(sweep)
    assert k.point(3).fault_threshold == FAULT_FACTOR * base
    assert not k.point(3).thrashes
    assert k.n == 4 and k.point(4).reasons == ["starved"]


# --------------------------------------------------------------------------- repeats

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


def test_starvation_in_one_repeat_of_three_is_a_minority_and_in_two_the_knee():
    fine = in_memory(5, 4e5)
    starving = procs([600, 4e5, 4e5, 4e5, 4e5], [2_500, 3, 0, 0, 0], wall=12.0)
    base = {1: [in_memory(1, 2e6)] * 3, 3: [in_memory(3, 6e5)] * 3}
    k = find_knee({**base, 5: [fine, starving, fine], 6: [starving] * 3})
    assert (k.n, k.point(5).votes_text) == (6, "1/3")
    assert k.point(5).starved == 0          # the median repeat
    k = find_knee({**base, 5: [starving, fine, starving], 6: [starving] * 3})
    assert (k.n, k.point(5).votes_text, k.point(5).starved) == (5, "2/3", 1)
    # rule 1 is per run: N=5's one in-memory repeat is in N=6's baseline, its starving ones are not
    assert k.point(6).baseline.ns == (3, 5)


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


# --------------------------------------------------------------------------- the pieces

def test_zero_throughput_with_paging_is_a_collapse():
    sweep = {1: [fits(10e6)], 2: [(0.0, 2_000.0)]}
    assert find_knee(sweep).n == 2
    assert find_knee({1: [(0.0, 2_000.0)]}).n == 1


def test_input_order_empty_ns_and_plain_tuples():
    sweep = {8: [Sample(5_000, 1_000)], 1: [Sample(9e6, 0.5)], 3: [], 2: [(8e6, 0.4)],
             9: [(9e6, 900.0, (3e6, 3e6, 2_000))]}
    k = find_knee(sweep)
    assert [p.n for p in k.points] == [1, 2, 8, 9]
    assert k.n == 8
    assert k.point(9).verdicts[0].starved == 1


def test_in_memory_allowance():
    assert in_memory_allowance(PAGES) == pytest.approx(92.16)      # 1% of a 36 MiB process
    assert in_memory_allowance(2_000) == IN_MEMORY_FLOOR           # small processes: 50
    assert in_memory_allowance(None) == IN_MEMORY_FLOOR
    assert ran_in_memory([2, 0, 0], [PAGES] * 3)
    assert not ran_in_memory([538, 5, 0, 1], [PAGES] * 4)         # the 256 MiB VM's N=4, one run
    assert ran_in_memory([92, 0], [PAGES, PAGES]) and not ran_in_memory([93, 0], [PAGES, PAGES])
    s = sample([1e6, 2e6], [10, 4], 7.0, PAGES)
    assert (s.throughput, s.majflt_per_s, s.processes, s.in_memory, s.slowest) == \
        (3e6, 2.0, (1e6, 2e6), True, 1e6)
    assert Sample(1e6, 2.5).ran_in_memory and not Sample(1e6, 2.6).ran_in_memory   # API without counts


def test_repeat_rule_thresholds():
    assert repeat_thrashes(Sample(COLLAPSE_FRACTION * 10e6 - 1, 51.0), 10e6, 50.0)
    assert not repeat_thrashes(Sample(COLLAPSE_FRACTION * 10e6, 51.0), 10e6, 50.0)
    assert not repeat_thrashes(Sample(1.0, 50.0), 10e6, 50.0)
    # starved: strictly below the threshold, and only with (a)
    s = Sample(9e6, 51.0, (4.5e6, 4.5e6 - 1, 999.0))
    assert judge(s, 10e6, 50.0, starved_below=1_000.0).thrashes
    assert not judge(s, 10e6, 50.0, starved_below=999.0).thrashes
    assert not judge(s, 10e6, 51.0, starved_below=1_000.0).thrashes
    v = judge(Sample(1e6, 900.0, (1e6 / 3,) * 3), 10e6, 50.0, starved_below=1_000.0)
    assert v.reasons == ["sum"] and v.starved == 0


def test_rule_text_is_the_documented_one():
    assert "(a) paging:    F > max(50/s, 20 x F0)" in RULE
    assert "sum:     T < 0.5 x T0, or" in RULE
    assert "starved: at least one process ran below E(N) / 20." in RULE
    assert "E(N) = min(P0, T0 / N)" in RULE
    assert "at\n   most max(50, 1% of its pages) major faults" in RULE
    assert "at least half of its runs thrash" in RULE
    assert STARVED_FRACTION == 1 / 20 and COLLAPSE_FRACTION == 0.5
    assert FAULT_FLOOR_PER_S == 50.0 and FAULT_FACTOR == 20.0


def test_sweep_shown_as_ranges():
    from analysis.tables import ranges
    assert ranges([1, 2, 3, 5, 7, 8, 9]) == "1-3,5,7-9"
    assert ranges([4, 1, 2]) == "1,2,4"
    assert ranges([1, 2, 4, 6, 8]) == "1,2,4,6,8"


# --------------------------------------------------------------------------- validation

VALIDATION = Path(__file__).resolve().parent / "fixtures" / "validation-sweeps.json"


def _validation(rate):
    """The validation runs (tests/fixtures/validation-sweeps.json: labs and sizes that chose no
    constant), with the major-fault rate over the run's wall time (what case2.py feeds today) or
    over the timed phase (majflt_timed / seconds)."""
    data = json.loads(VALIDATION.read_text())["runs"]
    for run_id, machines in data.items():
        for machine, m in machines.items():
            sweep = {}
            for n, (wall, speeds, majflts, timed, seconds) in m["sweep"].items():
                s = sample(speeds, majflts, wall, m["work_mb"] * 256)
                if rate == "timed":
                    s = Sample(s.throughput, sum(timed) / seconds, s.processes, s.in_memory)
                sweep[int(n)] = [s]
            yield run_id, machine, m["mem_available_kb"] / 1024 / m["work_mb"], sweep


@pytest.mark.parametrize("run_id,machine,predicted,sweep", list(_validation("timed")),
                         ids=[f"{r}-{m}" for r, m, _, _ in _validation("timed")])
def test_validation_runs_knee_within_one_of_the_prediction(run_id, machine, predicted, sweep):
    """On runs that chose no constant (the trio lab, 18-20 MiB processes, auto-sized off the edge),
    with timed-phase fault rates the knee falls within 1 of the working-set prediction, on the
    first N with a starved process, and no verdict depends on N=1's speed."""
    k = find_knee(sweep)
    assert k.n is not None and abs(k.n - predicted) < 1, (k.n, predicted, k.notes)
    assert k.anomalies == []
    assert "starved" in k.point(k.n).reasons
    assert all(not p.starved for p in k.points if p.n < k.n and p.paging_votes)
    assert abs(predicted - round(predicted)) >= 0.3          # the auto size kept it off the edge
    one = sweep[1][0]
    scaled = {**sweep, 1: [Sample(3 * one.throughput, one.majflt_per_s, tuple(3 * p for p in one.processes),
                                  one.in_memory)]}
    assert find_knee(scaled).n == k.n


def test_validation_wall_time_rates_dilute_the_paging():
    """Why the knee wants timed-phase rates (issue 16): the fill and the barrier are in the wall
    time, so a run that starved three processes with 157 major faults/s in its timed phase
    (the 320 MiB VM, N=13) reads 47.8/s over its 41 s and looks back in memory: with the
    lifetime rate N=12 becomes an anomaly and that machine has no knee."""
    wall = {m: s for _, m, _, s in _validation("wall")}
    timed = {m: s for _, m, _, s in _validation("timed")}
    w, t = wall["m320"][13][0], timed["m320"][13][0]
    assert w.majflt_per_s <= FAULT_FLOOR_PER_S < t.majflt_per_s
    assert sum(1 for p in w.processes if p < STARVED_FRACTION * max(w.processes)) == 3
    k = find_knee(wall["m320"])
    assert (k.n, k.anomalies) == (None, [12])
