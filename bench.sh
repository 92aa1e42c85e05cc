#!/bin/sh
# The benchmark on the local default testbed, from a fresh machine: installs
# what is missing, boots the lab, measures pfprof's overhead next to
# `perf stat -I` and a /proc poller and the regularity of its ticks, runs a
# Case Study 2 sweep to time the testbed itself, prints the table and writes
# docs/benchmarks.md; the VMs are stopped at the end. Progress on stderr.
#   ./bench.sh [--lab FILE] [-e bench_rounds=N ...] [--doc FILE | --no-doc]
exec "$(dirname "$0")/scripts/launch.sh" thrashlab_job.bench "$@"
