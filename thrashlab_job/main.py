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
    parser = job_parser("./run.sh", __doc__)
    parser.add_argument("--resume", metavar="RUN_ID",
                        help="take up run RUN_ID where it stopped: the points it committed are kept, the rest "
                             "run (a sweep still running on a machine is re-attached)")
    args = parser.parse_args(argv)
    job = Job()
    lab = job.open_lab(args.lab, "run")
    if lab is None:
        return 2

    from localvm.testbed import Testbed
    bed = Testbed(lab, job.progress)

    extra = extra_vars(args)
    run_id = args.resume or time.strftime("%Y%m%d-%H%M%S-case2", time.gmtime())
    resume = ["-e", "resume=true"] if args.resume else []

    def body():
        job.name_run(run_id)
        job.bring_up(bed, *extra)
        # The same plays as run-case2.yml, as separate steps so that each is timed.
        job.step("sweep", job.playbook("playbooks/case2.yml", "-e", f"thrashlab_run_id={run_id}", *resume,
                                       *extra))
        job.step("collect", job.command([sys.executable, "-m", "collector", "pull", "--run", run_id,
                                         "--expect-case", "case2"]))
        compare = job.command([sys.executable, "-m", "analysis", "compare"])
        report = job.command([sys.executable, "-m", "analysis", "report"])
        job.step("analysis", lambda: (compare(), report()))

    return job.run_on(bed, body, keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
