"""The testbed image as a Vagrant box for vagrant-libvirt (``python -m localvm box``).

A libvirt box is a tar of ``box.img`` (the qcow2 disk) and ``metadata.json``.
This one also carries the image's kernel and initrd (the disk has no boot
loader: the VMs boot directly from them, as localvm's do) and
``thrashlab-box.json`` (what it was made from). The loopback layer of the
Vagrantfile (vagrant/loopback.rb) finds them in the added box's directory.

The box is named ``thrashlab/bookworm-<image key>`` and added to the Vagrant
of ``$VAGRANT_HOME`` (default ``~/.vagrant.d``); when a box of that name and
format is already there, nothing is rebuilt or re-added. The box's name is
recorded in ``<state dir>/vagrant/box.json`` for the layer.

The disk is the image's own (root logs in only with a key handed in through
QEMU's fw_cfg at boot, like localvm's VMs); nothing secret is baked into it.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from thrashlab.paths import cache_root, state_root
from thrashlab.progress import Progress, format_duration

from . import qemu
from .image import SUITE, Image, build_image

BOX_FORMAT = 1  # bump when the box's contents change meaning
BOX_INFO = "thrashlab-box.json"
PROVIDER = "libvirt"


class BoxError(RuntimeError):
    pass


def vagrant_home() -> Path:
    return Path(os.environ.get("VAGRANT_HOME") or Path.home() / ".vagrant.d").absolute()


def box_name(image_key: str) -> str:
    return f"thrashlab/{SUITE}-{image_key}"


def box_dir(name: str, home: Path | None = None) -> Path:
    """Where Vagrant keeps an added box (a box added from a file has version 0)."""
    return (home or vagrant_home()) / "boxes" / name.replace("/", "-VAGRANTSLASH-") / "0" / PROVIDER


def pointer_file() -> Path:
    return state_root() / "vagrant" / "box.json"


@dataclass(frozen=True)
class Box:
    name: str
    dir: Path
    added: bool  # False when it was already there

    def info(self) -> dict:
        return json.loads((self.dir / BOX_INFO).read_text())


def installed(name: str, image_key: str) -> bool:
    d = box_dir(name)
    try:
        info = json.loads((d / BOX_INFO).read_text())
    except (OSError, ValueError):
        return False
    return (info.get("format") == BOX_FORMAT and info.get("image_key") == image_key
            and all((d / f).is_file() for f in ("box.img", "metadata.json", "vmlinuz", "initrd.img")))


def _vagrant_env() -> dict:
    # No calls home (version checks) from a tool that only adds a local file.
    return {**os.environ, "VAGRANT_CHECKPOINT_DISABLE": "1"}


def _write_pointer(name: str, image: Image) -> None:
    path = pointer_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"name": name, "image_key": image.info()["key"],
            "kernel_release": image.info().get("kernel_release"),
            "vagrant_home": str(vagrant_home()), "box_dir": str(box_dir(name))}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _virtual_size_gib(disk: Path) -> int:
    out = subprocess.run(["qemu-img", "info", "--output=json", str(disk)],
                         capture_output=True, text=True, check=True).stdout
    return max(1, math.ceil(json.loads(out)["virtual-size"] / 2**30))


def _pack(image: Image, out: Path, work: Path) -> None:
    info = image.info()
    _link_or_copy(image.disk, work / "box.img")
    _link_or_copy(image.kernel, work / "vmlinuz")
    _link_or_copy(image.initrd, work / "initrd.img")
    (work / "metadata.json").write_text(json.dumps(
        {"provider": PROVIDER, "format": "qcow2", "virtual_size": _virtual_size_gib(image.disk)}) + "\n")
    (work / BOX_INFO).write_text(json.dumps(
        {"format": BOX_FORMAT, "image_key": info["key"], "kernel_release": info.get("kernel_release"),
         "suite": SUITE, "kernel": "vmlinuz", "initrd": "initrd.img",
         "cmdline": "root=/dev/vda rw console=ttyS0 panic=-1 net.ifnames=1",
         "packed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2) + "\n")
    subprocess.run(["tar", "-C", str(work), "-cf", str(out), "metadata.json", BOX_INFO,
                    "vmlinuz", "initrd.img", "box.img"], check=True)


def _old_boxes(keep: str) -> list[str]:
    root = vagrant_home() / "boxes"
    prefix = box_name("").replace("/", "-VAGRANTSLASH-")
    if not root.is_dir():
        return []
    return sorted(p.name.replace("-VAGRANTSLASH-", "/") for p in root.iterdir()
                  if p.name.startswith(prefix) and p.name.replace("-VAGRANTSLASH-", "/") != keep)


def build_box(force: bool = False, prune: bool = True, progress: Progress | None = None) -> Box:
    """Add the box of the current image to Vagrant unless it is already there."""
    progress = progress or Progress()
    image = build_image(progress=progress)
    key = image.info()["key"]
    name = box_name(key)
    # The layer picks TCG or KVM from localvm's probe (cached per host boot).
    qemu.choose_accelerator(image.kernel, say=lambda m: progress.say(f"box: {m}"))
    if installed(name, key) and not force:
        progress.say(f"box: {name} already added to {vagrant_home()}")
        _write_pointer(name, image)
        return Box(name, box_dir(name), added=False)
    if shutil.which("vagrant") is None:
        raise BoxError("vagrant is not installed (Debian: apt-get install vagrant vagrant-libvirt)")
    started = time.monotonic()
    parent = cache_root() / "vagrant"
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="box-", dir=parent))
    try:
        out = parent / f"{work.name}.box"
        progress.say(f"box: packing {image.dir.name} (disk, kernel, initrd) as a libvirt box")
        _pack(image, out, work)
        shutil.rmtree(work)
        progress.say(f"box: vagrant box add --name {name} (into {vagrant_home()})")
        proc = subprocess.run(["vagrant", "box", "add", "--name", name, "--provider", PROVIDER,
                               "--force", str(out)],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, env=_vagrant_env())
        if proc.returncode != 0:
            raise BoxError(f"`vagrant box add` failed (exit {proc.returncode}):\n"
                           f"{(proc.stdout + proc.stderr)[-3000:]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        (parent / f"{work.name}.box").unlink(missing_ok=True)
    if not installed(name, key):
        raise BoxError(f"`vagrant box add` succeeded but {box_dir(name)} is incomplete")
    _write_pointer(name, image)
    progress.say(f"box: {name} added in {format_duration(time.monotonic() - started)}")
    if prune:
        for old in _old_boxes(keep=name):
            # Refused (and left) while a machine still uses it.
            proc = subprocess.run(["vagrant", "box", "remove", old, "--all"], stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, env=_vagrant_env())
            progress.say(f"box: older box {old} " + ("removed" if proc.returncode == 0
                                                     else "kept (still in use?)"))
    return Box(name, box_dir(name), added=True)
