"""The main job, end to end on the local default testbed (run by ./run.sh).

image -> boot -> setup -> Case Study 2 sweep -> collect -> analysis -> shutdown.
The VMs are stopped whatever happens. Each step's time is printed at the end,
so a user sees where the time goes.
"""
from __future__ import annotations

import sys
import time

from thrashlab_job.job import Job, extra_vars, job_parser


def main(argv=None) -> int:
    args = job_parser("./run.sh", __doc__).parse_args(argv)
    job = Job()
    lab = job.open_lab(args.lab, "run")
    if lab is None:
        return 2

    from localvm.testbed import Testbed
    bed = Testbed(lab, job.progress)

    extra = extra_vars(args)

    def body():
        job.bring_up(bed, *extra)
        # The same plays as run-case2.yml, as separate steps so that each is timed.
        run_id = time.strftime("%Y%m%d-%H%M%S-case2", time.gmtime())
        job.step("sweep", job.playbook("playbooks/case2.yml", "-e", f"thrashlab_run_id={run_id}", *extra))
        job.step("collect", job.command([sys.executable, "-m", "collector", "pull", "--run", run_id,
                                         "--expect-case", "case2"]))
        compare = job.command([sys.executable, "-m", "analysis", "compare"])
        report = job.command([sys.executable, "-m", "analysis", "report"])
        job.step("analysis", lambda: (compare(), report()))

    return job.run_on(bed, body, keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
