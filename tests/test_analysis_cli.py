"""The command line, run as ``python -m analysis`` on the hand-made result directories.

Every table is compared whole against the exact text below (the numbers were
checked by hand against tests/fixtures/make_fixtures.py).  The rates are
those of the timed window (12 s) from each run's profile.csv: a paging
process's major faults are spread over the 13 records of its timed phase, the
last of which (its unregistration, 1 ms after the window) lies outside, so
12/13 of them count.  Small machine of "good": N=1 ran in memory (9 and 11
major faults, at registration, before the window); N=2 pages (1483 and 1322
major faults x 12/13 / 12 s -> median 107.8/s > 50/s) at full speed (no
process starved, sum 10.2M), so it is not the knee, and as one process took
1.3-1.5k major faults (> 61, 1% of its 6144 pages) it is left out of the
baseline.  N=3: no smaller N >= 2 ran in memory and N=1 is no speed baseline
(it gives only F0), so N=3 is judged within each run: one process starves in
each repeat (1.2k and 0.9k, median 1.05k) against 1/20 of its run's fastest
(median 127.5k), with (8952 and 9803) x 12/13 / 12 s -> median 721.2 major
faults/s: N* = 3, in (2, 3], its fault rate above the in-memory level (0/s)
from the first tick of the window (1 s ticks in these fixtures) to the end.
(The old sum-only rule found no knee here: 4.95M > half of median(6.0M,
10.15M).)  The large machine never pages: no knee.
Table tests pass --no-plots so that nothing is written into the fixtures;
figures are tested on a copy in test_analysis_figures.py.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
F = "tests/fixtures/results"
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
import make_fixtures  # noqa: E402


def analysis(*args, cwd=ROOT, env=None):
    return subprocess.run([sys.executable, "-m", "analysis", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def check(args, stdout, stderr="", rc=0):
    p = analysis(*args)
    assert (p.stdout, p.stderr, p.returncode) == (stdout, stderr, rc)


COMPARE_TEXT = """\
machine  memory_mb  avail_mb  work_mb  predicted_n  onset  thrashing_n  after  peak_throughput  peak_n  throughput_at_n*  majflt/s_at_n*  starved_at_n*  slowest_at_n*  votes_at_n*  onset_s_at_n*  share_above_at_n*  sweep  source
-------  ---------  --------  -------  -----------  -----  -----------  -----  ---------------  ------  ----------------  --------------  -------------  -------------  -----------  -------------  -----------------  -----  -------
small          256      60.0     24.0         2.50      2            3      2            10.2M       2             4.95M           721.2              1          1.05k  2/2                   1.00               1.00  1-4    profile
large          512     200.0     24.0         8.33      -            -      -            14.0M       3                 -               -              -              -  -                        -                  -  1-4    profile

small: N*=3: paging 721.2 major faults/s > 50.0/s (14.4x); starved 1 of 3, slowest 1.05k accesses/s
  < fastest/20 = 128k (121x)
note: small: N=2: paging (107.8 major faults/s > 50.0/s) but progress did not collapse: not the
  knee; left out of the larger N's baselines
note: small: N=2, 3, 4: paging, and no smaller N >= 2 ran in memory: judged without a speed baseline
  (N=1 gives only the fault rate F0)
N*: the smallest N whose major-fault rate is far above the in-memory runs' and whose progress
  collapsed: the summed throughput fell below half of the in-memory runs' of smaller N >= 2, or at
  least one process starved (below 1/20 of the speed a process had in memory); null: no knee in the
  sweep (the rule: python -m analysis compare --help). onset: the smallest N whose major-fault rate
  is far above the in-memory runs', collapse or not (at or before N*).
onset_s_at_n*, share_above_at_n*: when the major-fault rate (over the trailing second, from the
  profile) first exceeded the machine's in-memory level, in seconds since the barrier's release, and
  the share of the timed window above it (medians over N*'s repeats); source: where the rates come
  from (profile, getrusage or mixed, see python -m analysis case2).
starved_at_n*, slowest_at_n*: starved processes and the slowest process's accesses/s at N* (medians
  over the repeats); Linux thrashes unfairly, so these collapse while the sum may hardly move.
"""

COMPARE_CSV = """\
machine,memory_mb,mem_available_mb,work_mb,predicted_n,onset_n,thrashing_n,thrashing_after,peak_throughput,peak_n,throughput_at_n,majflt_per_s_at_n,starved_at_n,slowest_at_n,repeats_thrashing_at_n,thrashing_onset_s,thrashing_share,n_values,source
small,256,60.0,24.0,2.5,2,3,2,10150000,2,4951050,721.2,1,1050,2/2,1.0,1.0,"1,2,3,4",profile
large,512,200.0,24.0,8.33,,,,14000000,3,,,,,,,,"1,2,3,4",profile
"""

COMPARE_MARKDOWN = """\
| machine | memory_mb | avail_mb | work_mb | predicted_n | onset | thrashing_n | after | peak_throughput | peak_n | throughput_at_n* | majflt/s_at_n* | starved_at_n* | slowest_at_n* | votes_at_n* | onset_s_at_n* | share_above_at_n* | sweep | source |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---|
| small | 256 | 60.0 | 24.0 | 2.50 | 2 | 3 | 2 | 10.2M | 2 | 4.95M | 721.2 | 1 | 1.05k | 2/2 | 1.00 | 1.00 | 1-4 | profile |
| large | 512 | 200.0 | 24.0 | 8.33 | - | - | - | 14.0M | 3 | - | - | - | - | - | - | - | 1-4 | profile |

- small: N*=3: paging 721.2 major faults/s > 50.0/s (14.4x); starved 1 of 3, slowest 1.05k accesses/s < fastest/20 = 128k (121x)
- note: small: N=2: paging (107.8 major faults/s > 50.0/s) but progress did not collapse: not the knee; left out of the larger N's baselines
- note: small: N=2, 3, 4: paging, and no smaller N >= 2 ran in memory: judged without a speed baseline (N=1 gives only the fault rate F0)
- N*: the smallest N whose major-fault rate is far above the in-memory runs' and whose progress collapsed: the summed throughput fell below half of the in-memory runs' of smaller N >= 2, or at least one process starved (below 1/20 of the speed a process had in memory); null: no knee in the sweep (the rule: python -m analysis compare --help). onset: the smallest N whose major-fault rate is far above the in-memory runs', collapse or not (at or before N*).
- onset_s_at_n*, share_above_at_n*: when the major-fault rate (over the trailing second, from the profile) first exceeded the machine's in-memory level, in seconds since the barrier's release, and the share of the timed window above it (medians over N*'s repeats); source: where the rates come from (profile, getrusage or mixed, see python -m analysis case2).
- starved_at_n*, slowest_at_n*: starved processes and the slowest process's accesses/s at N* (medians over the repeats); Linux thrashes unfairly, so these collapse while the sum may hardly move.
"""

COMPARE_JSON = """\
[
  {
    "machine": "small",
    "memory_mb": 256,
    "mem_available_mb": 60.0,
    "work_mb": 24.0,
    "predicted_n": 2.5,
    "onset_n": 2,
    "thrashing_n": 3,
    "thrashing_after": 2,
    "peak_throughput": 10150000,
    "peak_n": 2,
    "throughput_at_n": 4951050,
    "majflt_per_s_at_n": 721.2,
    "starved_at_n": 1,
    "slowest_at_n": 1050,
    "repeats_thrashing_at_n": "2/2",
    "thrashing_onset_s": 1.0,
    "thrashing_share": 1.0,
    "n_values": [
      1,
      2,
      3,
      4
    ],
    "source": "profile",
    "kernel": "6.1.0-28-amd64",
    "suite": null,
    "swap_type": null,
    "mglru": null,
    "cpus": 1,
    "sysctl": {},
    "zswap_compressor": null,
    "collapse_at_n": [
      "starved"
    ],
    "baseline_n_values": [
      1
    ],
    "baseline_throughput": null,
    "expected_process_throughput": null,
    "starved_threshold": null,
    "fault_threshold_per_s": 50.0,
    "fault_level_per_s": 0.0,
    "source_counts": {
      "profile": 8
    },
    "dropped_repeats": [],
    "reasons": [
      {
        "test": "paging",
        "value": 721.2,
        "limit": 50.0,
        "margin": 14.42
      },
      {
        "test": "starved",
        "value": 1050.0,
        "limit": 127500.0,
        "margin": 121.43,
        "processes": 1,
        "against": "fastest/20"
      }
    ],
    "anomalies": [],
    "notes": [
      "N=2: paging (107.8 major faults/s > 50.0/s) but progress did not collapse: not the knee; left out of the larger N's baselines",
      "N=2, 3, 4: paging, and no smaller N >= 2 ran in memory: judged without a speed baseline (N=1 gives only the fault rate F0)"
    ]
  },
  {
    "machine": "large",
    "memory_mb": 512,
    "mem_available_mb": 200.0,
    "work_mb": 24.0,
    "predicted_n": 8.33,
    "onset_n": null,
    "thrashing_n": null,
    "thrashing_after": null,
    "peak_throughput": 14000000,
    "peak_n": 3,
    "throughput_at_n": null,
    "majflt_per_s_at_n": null,
    "starved_at_n": null,
    "slowest_at_n": null,
    "repeats_thrashing_at_n": null,
    "thrashing_onset_s": null,
    "thrashing_share": null,
    "n_values": [
      1,
      2,
      3,
      4
    ],
    "source": "profile",
    "kernel": "6.1.0-28-amd64",
    "suite": null,
    "swap_type": null,
    "mglru": null,
    "cpus": 1,
    "sysctl": {},
    "zswap_compressor": null,
    "collapse_at_n": null,
    "baseline_n_values": null,
    "baseline_throughput": null,
    "expected_process_throughput": null,
    "starved_threshold": null,
    "fault_threshold_per_s": null,
    "fault_level_per_s": 0.0,
    "source_counts": {
      "profile": 8
    },
    "dropped_repeats": [],
    "reasons": null,
    "anomalies": [],
    "notes": []
  }
]
"""

CASE2_TEXT = """\
machine  N  reps  dropped  source   prof_vs_rusage_%  throughput  thr_min  thr_max  slowest  cpu_util  majflt/s  majflt/s_max  some_avg10  full_avg10  some_%  full_%  overlap_s
-------  -  ----  -------  -------  ----------------  ----------  -------  -------  -------  --------  --------  ------------  ----------  ----------  ------  ------  ---------
small    1     2        0  profile              0.00       6.00M    5.90M    6.10M    6.00M     0.873      0.00          0.00        0.00        0.00    0.00    0.00      12.00
small    2     2        0  profile              0.00       10.2M    8.00M    12.3M    4.95M     0.497    107.79        114.00        0.25        0.10    0.25    0.10      11.80
small    3     2        0  profile              0.00       4.95M    4.70M    5.20M    1.05k     0.522    721.21        753.92       23.50       15.00   61.25   41.25      11.00
small    4     2        0  profile              0.00       2.75M    2.60M    2.90M      650     0.528   2192.42       2307.75       28.50       17.00   71.00   51.00      10.50
large    1     2        0  profile              0.00       5.15M    4.80M    5.50M    5.15M     0.873      0.00          0.00        0.00        0.00    0.00    0.00      12.00
large    2     2        0  profile              0.00       7.45M    3.90M    11.0M    3.55M     0.877      0.00          0.00        0.00        0.00    0.00    0.00      11.90
large    3     2        0  profile              0.00       14.0M    13.8M    14.2M    4.24M     0.881      0.00          0.00        0.00        0.00    0.00    0.00      11.80
large    4     2        0  profile              0.00       10.1M    5.10M    15.0M    2.18M     0.885      0.00          0.00        0.10        0.00    0.05    0.00      11.60

throughput: accesses/s summed over the N processes (mean, min, max over the repeats)
slowest: accesses/s of the slowest process (median over the repeats): it collapses when some
  processes starve, even where the sum hardly moves
source: profile (pfprof's records in the timed window, cross-checked against getrusage since
  registration), getrusage (the work JSONs: the profile was missing, corrupt or disagreed; the
  warnings say why), or mixed over the repeats (--json: source_counts, source_reasons);
  prof_vs_rusage_%: the largest difference between the profile and getrusage since registration
  (minor, major faults, CPU; % of getrusage) over the repeats (--json: profile_diff_pct)
cpu_util: CPU time of the N processes over the timed window (barrier release to the last process's
  end) in CPUs (up to the vCPUs); on getrusage, lifetime CPU / wall time of the run
majflt/s: major faults of the N processes per second of the timed window (mean, max)
some/full_avg10: highest PSI memory avg10 (%) during the run; some/full_%: stall / wall time
overlap_s: how long all N timed phases ran together (min over the repeats)
"""

CASE1_TEXT = """\
machine  pair    proc     pid  mode  fill   mb  accesses  pages  minflt(prof)  majflt(prof)  minflt(work)  majflt(work)  P(1-e^-A/P)  expected  prof/expected  flag
-------  ------  ------  ----  ----  ----  ---  --------  -----  ------------  ------------  ------------  ------------  -----------  --------  -------------  ----
small    pair-A  work-1  1001  R     no     64     20000  16384         11580             0         11700             0        11550     11550          1.003
small    pair-A  work-2  1002  R     no     64      4000  16384          3579             0          3699             0         3549      3549          1.008
small    pair-A  total      -  -     -     128     24000  32768         15159             0         15399             0        15099     15099          1.004
small    pair-B  work-1  1003  R     no     64     20000  16384         11580             0         11700             0        11550     11550          1.003
small    pair-B  work-2  1004  L     no     64      4000  16384          4945             0          5065             0            -         -              -  -
small    pair-B  total      -  -     -     128     24000  32768         16525             0         16765             0            -         -              -  -
large    pair-A  work-1  1101  R     yes    64     20000  16384         16414             0         16534             0        11550     16384          1.002
large    pair-A  work-2  1102  R     yes    64      4000  16384         16414             0         16534             0         3549     16384          1.002
large    pair-A  total      -  -     -     128     24000  32768         32828             0         33068             0        15099     32768          1.002
large    pair-B  work-1  1103  R     yes    64     20000  16384         16414             0         16534             0        11550     16384          1.002
large    pair-B  work-2  1104  L     yes    64      4000  16384         16414             0         16534             0            -     16384          1.002
large    pair-B  total      -  -     -     128     24000  32768         32828             0         33068             0            -     32768          1.002

P: pages of the region (mb x 1 MiB / page size); A: accesses of the timed phase (work JSON)
P(1-e^-A/P): first touches expected of A uniformly random accesses over P fresh pages (R mode)
expected: minor faults expected in all: P with the fill (it first-touches every page, so the random
  accesses add none), P(1-e^-A/P) without it (R mode); start-up faults (~100-300) not included
(prof): since registration, summed from profile.csv; (work): the process's getrusage at exit
prof/expected: minflt(prof) / expected; flag: over or under when more than 2% from 1
"""

CASE1_CSV = """\
machine,pair,proc,pid,mode,fill,mb,accesses,pages,minflt_profile,majflt_profile,minflt_work,majflt_work,first_touch,expected_minflt,ratio,flag
small,pair-A,work-1,1001,R,no,64,20000,16384,11580,0,11700,0,11550,11550,1.003,
small,pair-A,work-2,1002,R,no,64,4000,16384,3579,0,3699,0,3549,3549,1.008,
small,pair-A,total,,,,128,24000,32768,15159,0,15399,0,15099,15099,1.004,
small,pair-B,work-1,1003,R,no,64,20000,16384,11580,0,11700,0,11550,11550,1.003,
small,pair-B,work-2,1004,L,no,64,4000,16384,4945,0,5065,0,,,,
small,pair-B,total,,,,128,24000,32768,16525,0,16765,0,,,,
large,pair-A,work-1,1101,R,yes,64,20000,16384,16414,0,16534,0,11550,16384,1.002,
large,pair-A,work-2,1102,R,yes,64,4000,16384,16414,0,16534,0,3549,16384,1.002,
large,pair-A,total,,,,128,24000,32768,32828,0,33068,0,15099,32768,1.002,
large,pair-B,work-1,1103,R,yes,64,20000,16384,16414,0,16534,0,11550,16384,1.002,
large,pair-B,work-2,1104,L,yes,64,4000,16384,16414,0,16534,0,,16384,1.002,
large,pair-B,total,,,,128,24000,32768,32828,0,33068,0,,32768,1.002,
"""

WARNINGS_CASE2_TEXT = """\
machine  N  reps  dropped  source   prof_vs_rusage_%  throughput  thr_min  thr_max  slowest  cpu_util  majflt/s  majflt/s_max  some_avg10  full_avg10  some_%  full_%  overlap_s
-------  -  ----  -------  -------  ----------------  ----------  -------  -------  -------  --------  --------  ------------  ----------  ----------  ------  ------  ---------
small    1     2        0  profile              0.00       6.00M    5.90M    6.10M    6.00M     0.873      0.00          0.00        0.00        0.00    0.00    0.00      12.00
small    2     1        1  profile              0.00       12.3M    12.3M    12.3M    6.00M     0.497    114.00        114.00        0.50        0.20    0.50    0.20      11.80
small    3     2        0  profile              0.00       4.95M    4.70M    5.20M    1.05k     0.522    721.21        753.92       23.50       15.00   61.25   41.25      11.00
small    4     2        0  profile              0.00       2.75M    2.60M    2.90M      650     0.528   2192.42       2307.75       28.50       17.00   70.00   50.00      10.50
large    1     2        0  profile              0.00       5.15M    4.80M    5.50M    5.15M     0.873      0.00          0.00        0.00        0.00    0.00    0.00      12.00
large    2     2        0  profile              0.00       7.45M    3.90M    11.0M    3.55M     0.877      0.00          0.00        0.00        0.00    0.00    0.00      11.90
large    3     1        1  profile              0.00       13.8M    13.8M    13.8M    4.18M     0.881      0.00          0.00        0.00        0.00    0.00    0.00      11.80
large    4     2        0  profile              0.00       10.1M    5.10M    15.0M    2.18M     0.885      0.00          0.00        0.10        0.00    0.05    0.00      11.60

throughput: accesses/s summed over the N processes (mean, min, max over the repeats)
slowest: accesses/s of the slowest process (median over the repeats): it collapses when some
  processes starve, even where the sum hardly moves
source: profile (pfprof's records in the timed window, cross-checked against getrusage since
  registration), getrusage (the work JSONs: the profile was missing, corrupt or disagreed; the
  warnings say why), or mixed over the repeats (--json: source_counts, source_reasons);
  prof_vs_rusage_%: the largest difference between the profile and getrusage since registration
  (minor, major faults, CPU; % of getrusage) over the repeats (--json: profile_diff_pct)
cpu_util: CPU time of the N processes over the timed window (barrier release to the last process's
  end) in CPUs (up to the vCPUs); on getrusage, lifetime CPU / wall time of the run
majflt/s: major faults of the N processes per second of the timed window (mean, max)
some/full_avg10: highest PSI memory avg10 (%) during the run; some/full_%: stall / wall time
overlap_s: how long all N timed phases ran together (min over the repeats)
"""

WARNINGS_CASE2_TEXT_STDERR = """\
analysis: warning: tests/fixtures/results/warnings/manifest.json: machine 'tiny' skipped (status 'failed': ssh: connection refused after 3 retries)
analysis: warning: tests/fixtures/results/warnings/small/case2/n-01/r-1/psi-samples.csv:4: expected 5 fields, found 4 (file truncated?); PSI avg10 of this repeat left out
analysis: warning: tests/fixtures/results/warnings/small/case2/n-02/r-2/work-2.json:1: invalid JSON: Unterminated string starting at (column 38); this repeat is dropped
analysis: warning: tests/fixtures/results/warnings/small/case2/n-04/r-2/psi-after.txt: no such file; PSI totals of this repeat left out
analysis: warning: tests/fixtures/results/warnings/large/case2/n-03/r-1/run.json: exit codes [0, 137, 0], oom_killed 1; this repeat is dropped
"""

WARNINGS_COMPARE_TEXT = """\
machine  memory_mb  avail_mb  work_mb  predicted_n  onset  thrashing_n  after  peak_throughput  peak_n  throughput_at_n*  majflt/s_at_n*  starved_at_n*  slowest_at_n*  votes_at_n*  onset_s_at_n*  share_above_at_n*  sweep  source
-------  ---------  --------  -------  -----------  -----  -----------  -----  ---------------  ------  ----------------  --------------  -------------  -------------  -----------  -------------  -----------------  -----  -------
small          256      60.0     24.0         2.50      2            3      2            12.3M       2             4.95M           721.2              1          1.05k  2/2                   1.00               1.00  1-4    profile
large          512     200.0     24.0         8.33      -            -      -            13.8M       3                 -               -              -              -  -                        -                  -  1-4    profile

small: N*=3: paging 721.2 major faults/s > 50.0/s (14.4x); starved 1 of 3, slowest 1.05k accesses/s
  < fastest/20 = 128k (121x)
note: small: N=2: paging (114.0 major faults/s > 50.0/s) but progress did not collapse: not the
  knee; left out of the larger N's baselines
note: small: N=2, 3, 4: paging, and no smaller N >= 2 ran in memory: judged without a speed baseline
  (N=1 gives only the fault rate F0)
dropped: small: N=2 r-2: tests/fixtures/results/warnings/small/case2/n-02/r-2/work-2.json:1: invalid
  JSON: Unterminated string starting at (column 38)
dropped: large: N=3 r-1: tests/fixtures/results/warnings/large/case2/n-03/r-1/run.json: exit codes
  [0, 137, 0], oom_killed 1
N*: the smallest N whose major-fault rate is far above the in-memory runs' and whose progress
  collapsed: the summed throughput fell below half of the in-memory runs' of smaller N >= 2, or at
  least one process starved (below 1/20 of the speed a process had in memory); null: no knee in the
  sweep (the rule: python -m analysis compare --help). onset: the smallest N whose major-fault rate
  is far above the in-memory runs', collapse or not (at or before N*).
onset_s_at_n*, share_above_at_n*: when the major-fault rate (over the trailing second, from the
  profile) first exceeded the machine's in-memory level, in seconds since the barrier's release, and
  the share of the timed window above it (medians over N*'s repeats); source: where the rates come
  from (profile, getrusage or mixed, see python -m analysis case2).
starved_at_n*, slowest_at_n*: starved processes and the slowest process's accesses/s at N* (medians
  over the repeats); Linux thrashes unfairly, so these collapse while the sum may hardly move.
"""

WARNINGS_COMPARE_TEXT_STDERR = """\
analysis: warning: tests/fixtures/results/warnings/manifest.json: machine 'tiny' skipped (status 'failed': ssh: connection refused after 3 retries)
analysis: warning: tests/fixtures/results/warnings/small/case2/n-01/r-1/psi-samples.csv:4: expected 5 fields, found 4 (file truncated?); PSI avg10 of this repeat left out
analysis: warning: tests/fixtures/results/warnings/small/case2/n-02/r-2/work-2.json:1: invalid JSON: Unterminated string starting at (column 38); this repeat is dropped
analysis: warning: tests/fixtures/results/warnings/small/case2/n-04/r-2/psi-after.txt: no such file; PSI totals of this repeat left out
analysis: warning: tests/fixtures/results/warnings/large/case2/n-03/r-1/run.json: exit codes [0, 137, 0], oom_killed 1; this repeat is dropped
analysis: warning: tests/fixtures/results/warnings/large/case2/params.json: missing key 'work_mb'; using the work JSONs' mb (24)
"""


# --------------------------------------------------------------------------- whole outputs

def test_compare_text():
    check(["compare", f"{F}/good", "--no-plots"], COMPARE_TEXT)


def test_compare_csv():
    check(["compare", f"{F}/good", "--no-plots", "--format", "csv"], COMPARE_CSV)


def test_compare_markdown():
    check(["compare", f"{F}/good", "--no-plots", "--format", "markdown"], COMPARE_MARKDOWN)


def test_compare_json():
    check(["compare", f"{F}/good", "--no-plots", "--json"], COMPARE_JSON)
    rows = json.loads(COMPARE_JSON)
    for row in rows:
        assert {"machine", "memory_mb", "thrashing_n", "predicted_n", "peak_throughput"} <= set(row)
    assert [(r["machine"], r["thrashing_n"]) for r in rows] == [("small", 3), ("large", None)]


def test_case2_text():
    check(["case2", f"{F}/good", "--no-plots"], CASE2_TEXT)


def test_case1_text():
    check(["case1", f"{F}/good", "--no-plots"], CASE1_TEXT)


def test_case1_csv():
    check(["case1", f"{F}/good", "--no-plots", "--format", "csv"], CASE1_CSV)


def test_warnings_case2():
    check(["case2", f"{F}/warnings", "--no-plots"], WARNINGS_CASE2_TEXT, WARNINGS_CASE2_TEXT_STDERR)


def test_warnings_compare():
    check(["compare", f"{F}/warnings", "--no-plots"], WARNINGS_COMPARE_TEXT, WARNINGS_COMPARE_TEXT_STDERR)


def test_python_api_matches_the_command_line():
    from analysis.compare import compare_rows, render_table
    from analysis.errors import Diagnostics
    diag = Diagnostics(sink=None)
    rows = compare_rows(ROOT / F / "good", diag)
    assert diag.warnings == []
    assert json.dumps(rows, indent=2) + "\n" == COMPARE_JSON
    for fmt, expected in (("text", COMPARE_TEXT), ("csv", COMPARE_CSV), ("markdown", COMPARE_MARKDOWN),
                          ("json", COMPARE_JSON)):
        assert render_table(rows, fmt) == expected


def test_disagreeing_repeats_are_noted(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(ROOT / F / "good", run)
    # small N=3, repeat 2 did not page: one of two repeats thrashed, a tie, counted as thrashing
    target = run / "small/case2/n-03/r-2"
    works = []
    for k in (1, 2, 3):
        w = json.loads((target / f"work-{k}.json").read_text())
        w.update(accesses_per_s=3_000_000.0, majflt=3, majflt_timed=0, minflt_timed=0,
                 minflt=w["minflt"] - w["majflt"])
        (target / f"work-{k}.json").write_text(json.dumps(w))
        works.append(w)
    # ... and its profile says the same (else the run would fall back to getrusage, warning)
    (target / "profile.csv").write_text(make_fixtures.case2_profile(works, paging=False))
    rj = json.loads((target / "run.json").read_text())
    rj["starved"] = 0
    (target / "run.json").write_text(json.dumps(rj))
    p = analysis("compare", run, "--no-plots")
    assert p.returncode == 0 and p.stderr == ""
    lines = p.stdout.splitlines()
    assert lines[2].split()[:7] == ["small", "256", "60.0", "24.0", "2.50", "2", "3"]
    assert lines[2].split()[-5] == "1/2"
    # starved and slowest are medians over the repeats: (1 + 0) / 2 and (1.2k + 3.0M) / 2
    assert lines[2].split()[-7:-5] == ["0.5", "1.50M"]
    assert "note: small: N=3: 1 of 2 repeats thrashed (at least half: N thrashes)" in lines
    js = json.loads(analysis("compare", run, "--no-plots", "--json").stdout)
    assert js[0]["notes"][1] == "N=3: 1 of 2 repeats thrashed (at least half: N thrashes)"
    assert js[0]["repeats_thrashing_at_n"] == "1/2"
    assert js[0]["starved_at_n"] == 0.5


# --------------------------------------------------------------------------- bad input

ERRORS = [
    ("no-manifest", "compare", "tests/fixtures/results/no-manifest/manifest.json: no such file"),
    ("no-manifest", "case1", "tests/fixtures/results/no-manifest/manifest.json: no such file"),
    ("bad-manifest", "case2",
     "tests/fixtures/results/bad-manifest/manifest.json:5: invalid JSON: Expecting ',' delimiter (column 2)"),
    ("missing-facts", "compare", "tests/fixtures/results/missing-facts/large/facts.json: no such file"),
    ("truncated-profile", "case1", "tests/fixtures/results/truncated-profile/small/case1/pair-A/profile.csv:13: "
                                   "expected 7 fields, found 3 (file truncated?)"),
    ("bad-profile-value", "case1", "tests/fixtures/results/bad-profile-value/large/case1/pair-A/profile.csv:5: "
                                   "column 'majflt': not an integer: '7x'"),
    ("bad-params", "compare", "tests/fixtures/results/bad-params/small/case2/params.json:3: "
                              "invalid JSON: Expecting ',' delimiter (column 1)"),
]


@pytest.mark.parametrize("fixture,command,message", ERRORS, ids=[f"{e[0]}-{e[1]}" for e in ERRORS])
def test_bad_input_is_one_line_naming_the_file(fixture, command, message):
    for fmt in ([], ["--json"]):
        check([command, f"{F}/{fixture}", "--no-plots", *fmt], "", f"analysis: error: {message}\n", 2)


def test_no_usable_repeat_warns_then_fails():
    d = "tests/fixtures/results/no-usable-repeat/large/case2"
    check(["compare", f"{F}/no-usable-repeat", "--no-plots"], "",
          f"analysis: warning: {d}/n-01/r-1/run.json: no such file; this repeat is dropped\n"
          f"analysis: warning: {d}/n-01: no usable repeat; this N is left out\n"
          f"analysis: warning: {d}/n-02/r-1/run.json: no such file; this repeat is dropped\n"
          f"analysis: warning: {d}/n-02: no usable repeat; this N is left out\n"
          f"analysis: error: {d}: no usable repeat (see the warnings above)\n", 2)


def test_errors_where_only_another_case_is_broken_do_not_matter():
    # the broken profile is Case Study 1's: case2 and compare still answer
    p = analysis("compare", f"{F}/truncated-profile", "--no-plots", "--json")
    assert p.returncode == 0 and p.stderr == ""
    assert [r["machine"] for r in json.loads(p.stdout)] == ["small", "large"]


def test_missing_run_directory():
    check(["compare", f"{F}/does-not-exist"], "",
          "analysis: error: tests/fixtures/results/does-not-exist: no such run directory\n", 2)


def test_corrupt_files_written_on_the_fly(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(ROOT / F / "good", run)
    (run / "small/case1/params.json").write_bytes(b"\xff\xfe{}")
    p = analysis("case1", run, "--no-plots")
    assert (p.stdout, p.stderr, p.returncode) == ("", f"analysis: error: {run}/small/case1/params.json:1: "
                                                      "not UTF-8 text\n", 2)
    (run / "small/case1/params.json").write_text('{"fill": "yes"}')
    p = analysis("case1", run, "--no-plots")
    assert p.stderr == (f"analysis: error: {run}/small/case1/params.json: key 'fill': "
                        "expected true or false, found 'yes'\n")
    (run / "small/case1/params.json").write_text('{"fill": false}')
    prof = run / "large/case1/pair-B/profile.csv"
    prof.write_text("ts_ns,jiffies,pid,minflt,cpu_ns,flags\n1,2,3,4,5,6\n")
    p = analysis("case1", run, "--no-plots")
    assert p.stderr == (f"analysis: error: {prof}:1: missing column(s) majflt "
                        "(header: ts_ns,jiffies,pid,minflt,cpu_ns,flags)\n")
    prof.write_text("")
    p = analysis("case1", run, "--no-plots")
    assert p.stderr == f"analysis: error: {prof}:1: empty file (no header row)\n"
    (run / "manifest.json").write_text("[1, 2]\n")
    p = analysis("compare", run, "--no-plots")
    assert p.stderr == f"analysis: error: {run}/manifest.json:1: expected a JSON object, found list\n"
    (run / "manifest.json").write_text('{"machines": {"small": {"status": "failed"}}}\n')
    p = analysis("compare", run, "--no-plots")
    assert p.stderr == (f"analysis: warning: {run}/manifest.json: machine 'small' skipped (status 'failed')\n"
                        f"analysis: error: {run}/manifest.json: no machine with status 'ok'\n")
    assert p.returncode == 2


def test_work_json_with_a_wrong_type_drops_the_repeat(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(ROOT / F / "good", run)
    w = run / "large/case2/n-01/r-2/work-1.json"
    obj = json.loads(w.read_text())
    obj["majflt"] = "12"
    w.write_text(json.dumps(obj))
    p = analysis("case2", run, "--no-plots", "--format", "csv")
    assert p.returncode == 0
    assert p.stderr == (f"analysis: warning: {w}: key 'majflt': expected a number, found \"12\"; "
                        "this repeat is dropped\n")
    large1 = [line for line in p.stdout.splitlines() if line.startswith("large,1,")]
    assert large1[0].startswith("large,1,1,1,profile,0.0,0,0.873,4800000,")


# --------------------------------------------------------------------------- the command line itself

def test_default_run_is_latest_in_the_results_directory(tmp_path):
    """Default RUN: thrashlab.paths.results_root() / "latest" ($THRASHLAB_RESULTS_DIR), whatever the cwd."""
    results = tmp_path / "my-results"
    results.mkdir()
    os.symlink(ROOT / F / "good", results / "latest")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "results").mkdir(parents=True)
    os.symlink(ROOT / F / "does-not-exist", elsewhere / "results" / "latest")   # never read
    env = dict(os.environ, PYTHONPATH=str(ROOT), THRASHLAB_RESULTS_DIR=str(results))
    for command, expected in (("compare", COMPARE_TEXT), ("case2", CASE2_TEXT), ("case1", CASE1_TEXT)):
        p = analysis(command, "--no-plots", cwd=elsewhere, env=env)
        assert (p.stdout, p.stderr, p.returncode) == (expected, "", 0), command
    p = analysis("compare", "--help", cwd=elsewhere, env=env)
    assert f"(default:{results}/latest,thecollector'snewestcompleterun:" in "".join(p.stdout.split())
    # no run there: the error names the absolute default and what to do
    env["THRASHLAB_RESULTS_DIR"] = str(tmp_path / "empty")
    for command in ("compare", "case1", "case2", "report"):
        p = analysis(command, cwd=elsewhere, env=env)
        assert (p.stdout, p.returncode) == ("", 2), command
        assert p.stderr == (f"analysis: error: {tmp_path}/empty/latest: no such run directory (the default "
                            "RUN: the newest complete run the collector pulled; give RUN, or set "
                            "THRASHLAB_RESULTS_DIR)\n"), command


def test_default_run_without_the_variable_is_the_repositorys_results(monkeypatch, tmp_path):
    from analysis.__main__ import build_parser, default_run
    monkeypatch.delenv("THRASHLAB_RESULTS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_run() == ROOT / "results" / "latest"
    assert build_parser().parse_args(["compare"]).run is None     # filled in by main(), at run time
    monkeypatch.setenv("THRASHLAB_RESULTS_DIR", "rel")
    assert default_run() == tmp_path / "rel" / "latest"           # made absolute, as results_root() does


def test_help_documents_the_rule():
    p = analysis("compare", "--help")
    assert p.returncode == 0
    assert "(a) paging:    F > max(50/s, 20 x F0)" in p.stdout
    assert "sum:     T < 0.5 x T0, or" in p.stdout
    assert "starved: at least one process ran below E(N) / 20." in p.stdout
    words = " ".join(p.stdout.split())
    assert "at most max(50, 1% of its pages) major faults" in words
    assert "E(N) = min(P0, T0 / N)" in words
    assert "N thrashes when at least half of its runs thrash" in words
    assert "starved processes and the slowest process's accesses/s" in words
    assert "--json" in p.stdout and "{text,csv,markdown}" in p.stdout
    top = analysis("--help")
    assert all(c in top.stdout for c in ("case1", "case2", "compare", "report"))


MEASURED_COMPARE_TEXT = """\
machine  memory_mb  avail_mb  work_mb  predicted_n  onset  thrashing_n  after  peak_throughput  peak_n  throughput_at_n*  majflt/s_at_n*  starved_at_n*  slowest_at_n*  votes_at_n*  onset_s_at_n*  share_above_at_n*  sweep         source
-------  ---------  --------  -------  -----------  -----  -----------  -----  ---------------  ------  ----------------  --------------  -------------  -------------  -----------  -------------  -----------------  ------------  ---------
small          256     153.9     36.0         4.28      4            5      4            2.46M       4             1.14M           831.2              3          1.28k  1/1                      -                  -  1,3-7         getrusage
large          512     400.4     36.0        11.12     11           11      6            3.67M      11             3.67M            95.1              1          2.72k  1/1                      -                  -  1,6,11-13,17  getrusage
"""


# The measured fixture keeps only the numbers the old analysis read (no profile, no timed-phase
# times or counts): every run falls back to getrusage, lifetime rates, one warning each.
MEASURED_FALLBACK = "".join(
    f"analysis: warning: {F}/measured/{m}/case2/n-{n:02d}/r-1/work-1.json: missing key 'start_mono_ns'; "
    "no timed window; this run falls back to getrusage\n"
    for m, ns in (("small", (1, 3, 4, 5, 6, 7)), ("large", (1, 6, 11, 12, 13, 17))) for n in ns)


def test_measured_run_unfair_thrashing():
    """A real run (tests/fixtures/measured-20261126-001452.json): on the 512 MiB VM one process of 11
    starved at 2.7k accesses/s while the sum was the highest of the sweep; the old sum-only rule
    found no knee there.  The small VM paged at N=4 at full speed (left out of the baseline)."""
    p = analysis("compare", f"{F}/measured", "--no-plots")
    assert p.returncode == 0
    assert p.stderr == MEASURED_FALLBACK
    assert p.stdout.startswith(MEASURED_COMPARE_TEXT)
    assert ("note: small: N=4: paging (52.9 major faults/s > 50.0/s) but progress did not collapse: not the "
            "knee;\n  left out of the larger N's baselines\n") in p.stdout
    small, large = json.loads(analysis("compare", f"{F}/measured", "--no-plots", "--json").stdout)
    assert (small["thrashing_n"], small["baseline_n_values"], small["collapse_at_n"]) == (5, [3], ["starved"])
    # large: T0 = N=6's 1.53M (N=1 is no speed baseline); E(11) = min(P0, 1.53M / 11) = 139k; starved
    # below 7.0k; the sweep has no N between 6 and 11: N* in (6, 11]
    assert (large["thrashing_n"], large["baseline_n_values"], large["collapse_at_n"]) == (11, [6], ["starved"])
    assert (large["baseline_throughput"], large["expected_process_throughput"], large["starved_threshold"]) == \
        (1533290.0, 139390.0, 6969.5)
    assert (small["thrashing_after"], large["thrashing_after"]) == (4, 6)
    # small paged at N=4 at full speed: paging starts one N before the collapse; large: both at 11
    assert (small["onset_n"], large["onset_n"]) == (4, 11)
    assert "large: N*=11 in (6, 11]: paging 95.1 major faults/s > 50.0/s (1.9x); starved 1 of 11" in p.stdout
    assert large["reasons"][1] == {"test": "starved", "value": 2715.6, "limit": 6969.5, "margin": 2.57,
                                   "processes": 1, "against": "E(N)/20"}
    assert large["slowest_at_n"] == 2716 and large["throughput_at_n"] == large["peak_throughput"]
    for row in (small, large):
        assert abs(row["thrashing_n"] - row["predicted_n"]) < 1


def test_runner_starved_count_is_cross_checked(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(ROOT / F / "measured", run)
    rj = run / "large/case2/n-11/r-1/run.json"
    obj = json.loads(rj.read_text())
    assert obj["starved"] == 1
    obj["starved"] = 4
    rj.write_text(json.dumps(obj))
    other = run / "large/case2/n-12/r-1/run.json"
    obj = json.loads(other.read_text())
    obj["starved"] = "three"
    other.write_text(json.dumps(obj))
    p = analysis("compare", run, "--no-plots")
    assert p.returncode == 0
    assert p.stdout.startswith(MEASURED_COMPARE_TEXT)      # the work JSONs decide
    others = [line for line in p.stderr.splitlines(True) if not line.endswith("falls back to getrusage\n")]
    assert len(p.stderr.splitlines()) - len(others) == 12      # MEASURED_FALLBACK
    assert "".join(others) == (f"analysis: warning: {rj}: key 'starved' is 4 but the work JSONs have 1 process(es) "
                               "under 1% of the fastest; the work JSONs are used\n"
                               f"analysis: warning: {other}: key 'starved': expected a number, found \"three\"; "
                               "not cross-checked (the work JSONs are used)\n")


def test_sum_collapse_alone_is_still_a_knee(tmp_path):
    """Every process slowed alike (no one starved), the sum below half of T0, with paging: N* = 3."""
    run = tmp_path / "run"
    shutil.copytree(ROOT / F / "good", run)
    for r in (1, 2):
        for k in (1, 2):     # N=2 in memory: the speed baseline (N=1 is none), T0 = 10.15M
            w = run / f"small/case2/n-02/r-{r}/work-{k}.json"
            w.write_text(json.dumps({**json.loads(w.read_text()), "majflt": 3, "majflt_timed": 3}))
        # ... in its profile too: 3 major faults per process, at registration
        prof = run / f"small/case2/n-02/r-{r}/profile.csv"
        lines = prof.read_text().splitlines()
        head, rows = lines[0], [line.split(",") for line in lines[1:]]
        seen = set()
        for row in rows:
            row[4] = "0" if row[2] in seen else "3"
            seen.add(row[2])
        prof.write_text("\n".join([head] + [",".join(row) for row in rows]) + "\n")
        for k in (1, 2, 3):
            w = run / f"small/case2/n-03/r-{r}/work-{k}.json"
            obj = json.loads(w.read_text())
            obj["accesses_per_s"] = 900_000.0       # sum 2.7M < 5.08M; each 0.27 x E(3): not starved
            w.write_text(json.dumps(obj))
        rj = run / f"small/case2/n-03/r-{r}/run.json"
        obj = json.loads(rj.read_text())
        obj["starved"] = 0
        rj.write_text(json.dumps(obj))
    js = json.loads(analysis("compare", run, "--no-plots", "--json").stdout)
    assert (js[0]["thrashing_n"], js[0]["collapse_at_n"], js[0]["starved_at_n"]) == (3, ["sum"], 0)
    assert js[0]["baseline_n_values"] == [2]
    assert js[0]["reasons"][1] == {"test": "sum", "value": 2_700_000.0, "limit": 5_075_000.0, "margin": 1.88}


def test_usage_errors_exit_2():
    p = analysis()
    assert p.returncode == 2 and "usage: python -m analysis" in p.stderr
    p = analysis("compare", f"{F}/good", "--format", "html")
    assert p.returncode == 2 and "invalid choice: 'html'" in p.stderr


def test_a_case2_run_without_case1(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(ROOT / F / "good", run)
    for m in ("small", "large"):
        shutil.rmtree(run / m / "case1")
    p = analysis("compare", run, "--no-plots")
    assert (p.stdout, p.stderr, p.returncode) == (COMPARE_TEXT, "", 0)
    p = analysis("case1", run, "--no-plots")
    assert (p.stdout, p.returncode) == ("", 2)
    assert p.stderr == (f"analysis: error: {run}/small/case1: no such directory "
                        "(no Case Study 1 results for this machine)\n")
    p = analysis("report", run)
    assert p.returncode == 0, p.stderr
    html = (run / "analysis/report.html").read_text()
    assert "Case Study 2" in html and "Case Study 1" not in html


def test_a_process_missing_from_the_profile_is_a_warning(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(ROOT / F / "good", run)
    prof = run / "small/case1/pair-B/profile.csv"
    lines = prof.read_text().splitlines(keepends=True)
    prof.write_text("".join(line for line in lines if ",1004," not in line))
    p = analysis("case1", run, "--no-plots", "--format", "csv")
    assert p.returncode == 0
    assert p.stderr == (f"analysis: warning: {prof}: no record of pid 1004 (work-2.json); "
                        "profile columns left empty\n")
    assert "small,pair-B,work-2,1004,L,no,64,4000,16384,,,5065,0,,,,\n" in p.stdout
    assert "small,pair-B,total,,,,128,24000,32768,,,16765,0,,,,\n" in p.stdout


def test_runner_details_timeouts_available_memory_and_fill(tmp_path):
    """What the runner writes beyond the contract: timed_out, params mem_available_kb, work 'fill'."""
    run = tmp_path / "run"
    shutil.copytree(ROOT / F / "good", run)
    rj = run / "small/case2/n-04/r-1/run.json"
    obj = json.loads(rj.read_text())
    obj.update(timed_out=True, killed=[1, 2, 3, 4])
    rj.write_text(json.dumps(obj))
    pp = run / "small/case2/params.json"
    params = json.loads(pp.read_text())
    params["mem_available_kb"] = 73728          # 72 MiB at the start of case 2: predicted 3.0
    pp.write_text(json.dumps(params))
    p = analysis("compare", run, "--no-plots", "--json")
    assert p.returncode == 0
    assert p.stderr == (f"analysis: warning: {rj}: the run timed out and its work processes were stopped; "
                        "kept, their JSONs measure the part that ran\n")
    small = json.loads(p.stdout)[0]
    assert (small["mem_available_mb"], small["predicted_n"], small["thrashing_n"]) == (72.0, 3.0, 3)
    # case1 without 'fill' in params.json: each process's own 'fill' decides
    c1 = run / "large/case1/params.json"
    c1.write_text(json.dumps({k: v for k, v in json.loads(c1.read_text()).items() if k != "fill"}))
    w = run / "large/case1/pair-B/work-2.json"
    obj = json.loads(w.read_text())
    obj["fill"] = False
    w.write_text(json.dumps(obj))
    p = analysis("case1", run, "--no-plots", "--format", "csv")
    assert p.returncode == 0 and p.stderr == ""
    assert "large,pair-B,work-1,1103,R,yes,64,20000,16384,16414,0,16534,0,11550,16384,1.002,\n" in p.stdout
    assert "large,pair-B,work-2,1104,L,no,64,4000,16384,16414,0,16534,0,,,,\n" in p.stdout


@pytest.mark.parametrize("fixture", ["vm-sweep", "measured"])
def test_n1_three_times_faster_changes_no_knee(tmp_path, fixture):
    """A copy of a collected run whose N=1 processes ran three times as fast: the summed
    throughput the analysis reads changes (the peak moves), no machine's N* does."""
    run = tmp_path / "run"
    shutil.copytree(ROOT / F / fixture, run)
    before = {r["machine"]: r for r in json.loads(analysis("compare", run, "--no-plots", "--json").stdout)}
    for wp in run.glob("*/case2/n-01/r-*/work-*.json"):
        w = json.loads(wp.read_text())
        w["accesses"], w["accesses_per_s"] = 3 * w["accesses"], 3 * w["accesses_per_s"]
        wp.write_text(json.dumps(w))
    after = {r["machine"]: r for r in json.loads(analysis("compare", run, "--no-plots", "--json").stdout)}
    assert sorted(before) == sorted(after) and any(r["thrashing_n"] for r in before.values())
    for m, row in before.items():
        assert after[m]["peak_n"] == 1 and after[m]["peak_throughput"] > row["peak_throughput"]
        assert (after[m]["thrashing_n"], after[m]["onset_n"]) == (row["thrashing_n"], row["onset_n"]), m
