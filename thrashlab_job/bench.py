"""The benchmark, end to end on the local testbed (run by ./bench.sh).

image -> boot -> setup -> bench (idle fidelity, overhead rounds: one machine
at a time) -> Case Study 2 sweep (all machines at once, as users run it) ->
collect -> testbed.json (the time of every step) -> python -m analysis bench
(the table on stdout, docs/benchmarks.md) -> shutdown.

Every playbook gets the -e values given here, e.g. a shorter benchmark:
  ./bench.sh -e bench_rounds=3 -e bench_idle_seconds=30
"""
from __future__ import annotations

import json
import os
import sys
import time

from thrashlab import host
from thrashlab.lab import REPO_ROOT
from thrashlab.paths import results_root
from thrashlab_job.job import Job, extra_vars, job_parser


def write_testbed_json(run_dir, run_id: str, lab, accelerator: str | None, job: Job) -> None:
    """The host's side of the run (results-format.md): what the VMs cannot know."""
    from collector.pull import git_state
    rev, dirty = git_state(REPO_ROOT)
    here = host.describe()
    doc = {"run_id": run_id, "lab": lab.name, "lab_file": str(lab.path), "accelerator": accelerator,
           "host": {"cpus": here["cores"], "kernel": here["kernel"], "hostname": here["hostname"]},
           "git_revision": rev, "git_dirty": dirty,
           "steps": [{"name": name, "seconds": round(t, 1)} for name, t in job.timings]}
    tmp = run_dir / ".testbed.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, run_dir / "testbed.json")


def main(argv=None) -> int:
    parser = job_parser("./bench.sh", __doc__)
    doc = parser.add_mutually_exclusive_group()
    doc.add_argument("--doc", metavar="FILE", help="where the report goes (default: docs/benchmarks.md)")
    doc.add_argument("--no-doc", action="store_true", help="print the report only")
    args = parser.parse_args(argv)

    job = Job()
    lab = job.open_lab(args.lab, "bench")
    if lab is None:
        return 2
    extra = extra_vars(args)

    from localvm.testbed import Testbed
    bed = Testbed(lab, job.progress)
    run_id = time.strftime("%Y%m%d-%H%M%S-bench", time.gmtime())
    run_extra = ["-e", f"thrashlab_run_id={run_id}", *extra]

    def body():
        job.name_run(run_id)
        state = job.bring_up(bed, *extra)
        job.step("bench", job.playbook("playbooks/bench.yml", *run_extra))
        job.step("sweep", job.playbook("playbooks/case2.yml", *run_extra))
        job.step("collect", job.command([sys.executable, "-m", "collector", "pull", "--run", run_id,
                                         "--expect-case", "bench", "--expect-case", "case2"]))
        write_testbed_json(results_root() / run_id, run_id, lab, state.get("accelerator"), job)
        analysis = [sys.executable, "-m", "analysis", "bench", str(results_root() / run_id)]
        if args.no_doc:
            analysis.append("--no-doc")
        elif args.doc:
            analysis += ["--doc", args.doc]
        job.step("analysis", job.command(analysis))

    return job.run_on(bed, body, keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
