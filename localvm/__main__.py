"""python -m localvm: the lab's VMs under local QEMU (KVM if usable, else TCG).

    python -m localvm image [--rebuild] [--suite S]
                                           build or reuse the cached base image of every
                                           suite the lab's machines use (or of suite S)
    python -m localvm up                   boot every machine of the lab
    python -m localvm status               what runs, on which port
    python -m localvm ssh NAME [CMD...]    a shell or a command on a VM, as root
    python -m localvm down [--all]         stop every VM of the testbed; idempotent
    python -m localvm box [--force]        the image as a Vagrant box (vagrant-libvirt), added to Vagrant

Every command takes --lab FILE (default: $THRASHLAB_LAB, else lab.yml).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from thrashlab.lab import SUITES


def _testbed(args):
    from thrashlab.lab import load_lab

    from .testbed import Testbed
    return Testbed(load_lab(args.lab))


def cmd_image(args) -> int:
    from .image import build_image
    if args.suite:
        suites = args.suite
    else:
        from thrashlab.lab import load_lab
        suites = load_lab(args.lab).suites
    for suite in suites:
        image = build_image(rebuild=args.rebuild, suite=suite)
        info = image.info()
        print(f"{suite}: {image.dir} (kernel {info['kernel_release']}, key {info['key']})")
    return 0


def cmd_up(args) -> int:
    _testbed(args).up()
    return 0


def cmd_status(args) -> int:
    tb = _testbed(args)
    rows = tb.status()
    state = tb.state()
    if args.json:
        print(json.dumps({"lab": tb.lab.name, "accelerator": state.get("accelerator"),
                          "machines": [vars(r) for r in rows]}, indent=2))
        return 0
    accel = state.get("accelerator", "-")
    print(f"testbed {tb.lab.name} ({tb.lab.path}), accelerator {accel}, state {tb.dir}")
    print(f"{'machine':<16} {'state':<8} {'memory':>8} {'cpus':>4} {'ssh':>17} {'pid':>8}")
    for r in rows:
        ssh = f"127.0.0.1:{r.port}" if r.port else "-"
        print(f"{r.name:<16} {r.state:<8} {r.memory_mb:>5} MiB {r.cpus:>4} {ssh:>17} {r.pid or '-':>8}")
    return 0 if all(r.state == "running" for r in rows) else 3


def cmd_ssh(args) -> int:
    tb = _testbed(args)
    tb.lab.machine(args.name)
    if not tb.ssh_config.exists() or tb.our_pid(args.name) is None:
        print(f"localvm: error: {args.name} is not running; run `python -m localvm up` first",
              file=sys.stderr)
        return 2
    # Like ssh itself: the words are joined and the remote shell reads them.
    command = " ".join(args.command) if args.command else None
    argv = tb.ssh_argv(args.name, command)
    if command is None:
        argv.insert(1, "-t")
    os.execvp(argv[0], argv)


def cmd_down(args) -> int:
    if args.all:
        from thrashlab.lab import Lab
        from thrashlab.paths import state_root

        from .testbed import Testbed
        root = state_root() / "testbeds"
        names = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
        for name in names:
            lab = Lab(name=name, path=root / name, machines=())
            Testbed(lab).down()
        return 0
    _testbed(args).down()
    return 0


def cmd_box(args) -> int:
    from .box import BoxError, build_box
    try:
        box = build_box(force=args.force, prune=not args.keep_old)
    except BoxError as e:
        print(f"localvm: error: {e}", file=sys.stderr)
        return 2
    print(f"{box.name} ({'added' if box.added else 'already added'}; {box.dir})")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localvm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", metavar="FILE",
                        help="lab file (default: $THRASHLAB_LAB, else lab.yml)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("image", help="build or reuse the cached VM base image")
    p.add_argument("--rebuild", action="store_true", help="build even if a cached image exists")
    p.add_argument("--suite", action="append", choices=SUITES,
                   help="build this suite's image (repeatable; default: every suite of the lab file)")
    p.set_defaults(func=cmd_image)
    p = sub.add_parser("up", help="boot every machine of the lab")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("status", help="show the testbed's VMs (exit 3 unless all run)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("ssh", help="open a shell or run a command on a VM as root")
    p.add_argument("name")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_ssh)
    p = sub.add_parser("down", help="stop every VM of the testbed (idempotent)")
    p.add_argument("--all", action="store_true", help="every testbed of this checkout, whatever the lab")
    p.set_defaults(func=cmd_down)
    p = sub.add_parser("box", help="package the image as a libvirt box and add it to Vagrant "
                                   "(for THRASHLAB_VAGRANT_LOOPBACK=1 vagrant up; docs/vagrant.md)")
    p.add_argument("--force", action="store_true", help="re-add the box even if it is already added")
    p.add_argument("--keep-old", action="store_true",
                   help="keep the boxes of older images (default: remove those no machine uses)")
    p.set_defaults(func=cmd_box)
    # --lab is accepted after the subcommand too
    for sp in sub.choices.values():
        sp.add_argument("--lab", metavar="FILE", default=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from thrashlab.lab import LabError

    from .testbed import TestbedError
    try:
        return args.func(args)
    except (LabError, TestbedError) as e:
        print(f"localvm: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("localvm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
