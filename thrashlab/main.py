"""The main job, end to end on the local default testbed (run by ./run.sh).

image -> boot -> setup -> Case Study 2 sweep -> collect -> analysis -> shutdown.
The VMs are stopped whatever happens. Each step's time is printed at the end,
so a user sees where the time goes.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from .job import Job
from .lab import LabError, load_lab


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="./run.sh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", metavar="FILE", help="lab file (default: $THRASHLAB_LAB, else lab.yml)")
    parser.add_argument("--keep", action="store_true", help="leave the VMs running at the end")
    args = parser.parse_args(argv)

    job = Job()
    try:
        lab = load_lab(args.lab)
    except LabError as e:
        print(f"run: error: {e}", file=sys.stderr)
        return 2
    os.environ["THRASHLAB_LAB"] = str(lab.path)

    from localvm.image import build_image
    from localvm.testbed import Testbed
    bed = Testbed(lab, job.progress)

    def body():
        image = job.step("image", lambda: build_image(progress=job.progress))
        job.step("boot", lambda: bed.up(image))
        job.step("setup", job.playbook("playbooks/setup.yml"))
        # The same plays as run-case2.yml, as separate steps so that each is timed.
        run_id = time.strftime("%Y%m%d-%H%M%S-case2", time.gmtime())
        job.step("sweep", job.playbook("playbooks/case2.yml", "-e", f"thrashlab_run_id={run_id}"))
        job.step("collect", job.command([sys.executable, "-m", "collector", "pull", "--run", run_id,
                                         "--expect-case", "case2"]))
        compare = job.command([sys.executable, "-m", "analysis", "compare"])
        report = job.command([sys.executable, "-m", "analysis", "report"])
        job.step("analysis", lambda: (compare(), report()))

    return job.run_on(bed, body, keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
