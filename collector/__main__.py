"""python -m collector: results home from every machine of the lab.

    python -m collector pull [--run ID] [--lab FILE] [-i INVENTORY] [--limit PATTERN] [--jobs N]

Machines and connections come from the Ansible inventory (`ansible-inventory
--list` from the repository root: the lab's machines through whichever
testbed is up, or a static inventory given with -i): ansible_host,
ansible_port, ansible_user, ansible_ssh_private_key_file, and a ProxyJump
(-J) or ProxyCommand in ansible_ssh_common_args/ansible_ssh_extra_args;
where the inventory says nothing, ~/.ssh/config decides. Host keys, of jump
hosts too, are verified against the pinned known_hosts. See collector/pull.py
for what is verified and how a run lands under results/.
"""
from __future__ import annotations

import argparse
import sys


def _host_error(text: str) -> tuple[str, str]:
    name, sep, msg = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=MESSAGE, got {text!r}")
    return name, msg


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m collector", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pull", help="copy a run from every machine into results/<run id>/, verified",
                       description="Copy a run's results from every machine of the lab (in parallel, every file "
                                   "verified by its sha256) into results/<run id>/ with a manifest.json; point "
                                   "results/latest at it when every machine succeeded. Exit 1 if a machine "
                                   "failed, 2 if nothing could be collected.")
    p.add_argument("--run", metavar="ID", help="the run id (default: the newest run found on the machines)")
    p.add_argument("--lab", metavar="FILE", help="lab file (default: $THRASHLAB_LAB, else lab.yml)")
    p.add_argument("-i", "--inventory", action="append", metavar="SOURCE",
                   help="Ansible inventory (default: ansible.cfg's, i.e. the lab through its testbed); repeatable")
    p.add_argument("--limit", metavar="PATTERN", help="only these hosts (an Ansible host pattern)")
    p.add_argument("--expect-case", choices=("case1", "case2", "bench"), action="append",
                   help="fail a machine whose run lacks this case study (the case playbooks set it); repeatable")
    p.add_argument("--host-error", action="append", type=_host_error, default=[], metavar="NAME=MESSAGE",
                   help="a machine the case playbook saw fail: reported as failed with MESSAGE, not collected")
    p.add_argument("--results-dir", metavar="DIR",
                   help="where runs land (default: $THRASHLAB_RESULTS_DIR, else results/ of the repository)")
    p.add_argument("--retries", type=int, default=4, help="attempts per connection and per file (default 4)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a machine (default 30)")
    p.add_argument("--backoff", type=float, default=1.0, metavar="S",
                   help="first pause before a retry (s); doubled at each retry, at most 8x (default 1)")
    p.add_argument("--jobs", type=int, metavar="N",
                   help="machines collected at once (default: as many as there are, at most 8)")
    args = parser.parse_args(argv)

    from thrashlab.progress import Progress

    from .inventory import InventoryError, load_hosts
    from .pull import CollectError, Options, pull

    progress = Progress()
    if args.retries < 1:
        parser.error("--retries must be at least 1")
    if args.jobs is not None and args.jobs < 1:
        parser.error("--jobs must be at least 1")
    try:
        progress.say("reading the inventory (ansible-inventory --list)")
        hosts, lab = load_hosts(args.inventory, args.limit, args.lab)
        opts = Options(run_id=args.run, retries=args.retries, timeout=args.timeout, expect_case=args.expect_case,
                       host_errors=dict(args.host_error), results_dir=args.results_dir,
                       backoff_base=args.backoff, jobs=args.jobs)
        return pull(hosts, lab, opts, progress)
    except (InventoryError, CollectError) as e:
        print(f"collector: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"collector: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
