"""The testbed's VM base image: Debian from the host's own apt sources.

``mmdebstrap`` builds a minimal root filesystem with the kernel, its headers,
a compiler and sshd; ``mkfs.ext4 -d`` turns it into a disk without mounting
anything; the kernel and a small initramfs are copied out for direct boot.
The result is cached under ``<cache>/images/<suite>-<key>/``, where the key
hashes every input (suite, packages, guest files, the host's archive URI), so
that it is rebuilt only when one of them changes.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from thrashlab import aptsources
from thrashlab.paths import cache_root
from thrashlab.progress import Progress, format_duration

GUEST_DIR = Path(__file__).resolve().parent / "guest"
IMAGE_FORMAT = 1  # bump when the build steps below change meaning
SUITE = "bookworm"  # the default suite (a lab file's machines may choose another)
# Per-suite apt options: sid's Release file on a mirror may be past its
# Valid-Until (shared/docs/local-vm-notes.md), which apt otherwise refuses.
APT_OPTIONS = {"sid": ['Acquire::Check-Valid-Until "false"']}
DISK_SIZE = "8G"  # sparse: holds swap files up to a few GiB and the builds
PACKAGES = [
    "linux-image-amd64", "linux-headers-amd64", "gcc", "make", "libc6-dev",
    "openssh-server", "python3", "systemd-sysv", "udev", "kmod", "procps",
    "iproute2", "initramfs-tools", "zstd", "qemu-guest-agent", "ca-certificates", "dkms",
    "linux-perf",  # the peer profiler of the benchmarks (perf stat -I)
]
# Leave out what a testbed guest never reads; it makes the build faster.
DPKG_OPTIONS = [
    "force-unsafe-io",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/info/*",
]
REQUIRED_TOOLS = {"mmdebstrap": "mmdebstrap", "mkfs.ext4": "e2fsprogs", "qemu-img": "qemu-utils"}


class ImageError(RuntimeError):
    pass


@dataclass(frozen=True)
class Image:
    dir: Path

    @property
    def disk(self) -> Path:
        return self.dir / "base.qcow2"

    @property
    def kernel(self) -> Path:
        return self.dir / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.dir / "initrd.img"

    @property
    def info_path(self) -> Path:
        return self.dir / "image.json"

    def info(self) -> dict:
        return json.loads(self.info_path.read_text())

    def complete(self) -> bool:
        return all(p.is_file() for p in (self.disk, self.kernel, self.initrd, self.info_path))


def image_inputs(suite: str = SUITE) -> dict:
    guest_files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                   for p in sorted(GUEST_DIR.iterdir()) if p.is_file()}
    inputs = {
        "format": IMAGE_FORMAT,
        "suite": suite,
        "packages": sorted(PACKAGES),
        "dpkg_options": DPKG_OPTIONS,
        "disk_size": DISK_SIZE,
        "guest_files": guest_files,
        "archive": aptsources.debian_archive_uri(),
    }
    if APT_OPTIONS.get(suite):  # only where set, so that other suites keep their keys
        inputs["apt_options"] = APT_OPTIONS[suite]
    return inputs


def image_key(inputs: dict | None = None) -> str:
    inputs = inputs or image_inputs()
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def cached_image(suite: str = SUITE) -> Image:
    return Image(cache_root() / "images" / f"{suite}-{image_key(image_inputs(suite))}")


def _check_tools() -> None:
    missing = [f"{tool} (package {pkg})" for tool, pkg in REQUIRED_TOOLS.items()
               if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists()]
    if missing:
        raise ImageError("missing tools: " + ", ".join(missing) +
                         "; install them with apt-get (the README's set-up command does)")
    if os.geteuid() != 0:
        raise ImageError("building the image needs root (mmdebstrap in root mode and "
                         "file ownership in the disk image); run `sudo python -m localvm image` once")


def _run(cmd: list[str], log: Path, progress: Progress, what: str) -> None:
    progress.say(f"image: {what}")
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise ImageError(f"{what} failed (exit {proc.returncode}); last lines of {log}:\n{tail}")


def build_image(rebuild: bool = False, progress: Progress | None = None, suite: str = SUITE) -> Image:
    """Return the cached image of ``suite`` for the current inputs, building it if needed."""
    progress = progress or Progress()
    inputs = image_inputs(suite)
    image = Image(cache_root() / "images" / f"{suite}-{image_key(inputs)}")
    if image.complete() and not rebuild:
        progress.say(f"image: {suite}: cached at {image.dir}")
        return image
    _check_tools()
    started = time.monotonic()
    image.dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{image.dir.name}.build-", dir=image.dir.parent))
    log = image.dir.parent / f"{image.dir.name}.build.log"
    log.write_text("")
    try:
        rootfs = work / "rootfs"
        sources = aptsources.write_sources_for_suite(suite, work / "sources.list")
        essential_hook = (
            f'mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d" && '
            f'cp {GUEST_DIR}/initramfs-thrashlab.conf "$1/etc/initramfs-tools/conf.d/thrashlab.conf" && '
            f'cp {GUEST_DIR}/initramfs-modules "$1/usr/share/initramfs-tools/modules.d/thrashlab"')
        cmd = ["mmdebstrap", "--mode=root", "--variant=minbase",
               "--include=" + ",".join(PACKAGES),
               *[f"--dpkgopt={o}" for o in DPKG_OPTIONS],
               *[f"--aptopt={o}" for o in APT_OPTIONS.get(suite, [])],
               f"--essential-hook={essential_hook}",
               f'--customize-hook=sh {GUEST_DIR}/customize.sh "$1"',
               suite, str(rootfs), str(sources)]
        _run(cmd, log, progress, f"debootstrapping {suite} with mmdebstrap (about 1-2 minutes)")
        kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
        initrds = sorted((rootfs / "boot").glob("initrd.img-*"))
        if not kernels or not initrds:
            raise ImageError(f"no kernel or initrd in {rootfs}/boot; see {log}")
        kernel_release = kernels[-1].name[len("vmlinuz-"):]
        shutil.copy(kernels[-1], work / "vmlinuz")
        shutil.copy(initrds[-1], work / "initrd.img")
        raw = work / "disk.raw"
        subprocess.run(["truncate", "-s", DISK_SIZE, str(raw)], check=True)
        _run(["mkfs.ext4", "-q", "-F", "-L", "thrashlab-root", "-d", str(rootfs), str(raw)],
             log, progress, "making the ext4 root filesystem")
        _run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(work / "base.qcow2")],
             log, progress, "converting to qcow2")
        raw.unlink()
        shutil.rmtree(rootfs)
        info = {"key": image_key(inputs), "inputs": inputs, "kernel_release": kernel_release,
                "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "build_seconds": round(time.monotonic() - started, 1)}
        (work / "image.json").write_text(json.dumps(info, indent=2) + "\n")
        # Publish atomically: a half-built image never looks complete.
        if image.dir.exists():
            shutil.rmtree(image.dir)
        os.replace(work, image.dir)
        progress.say(f"image: {suite}: built in {format_duration(time.monotonic() - started)} "
                     f"(kernel {kernel_release}) at {image.dir}")
        return image
    except BaseException:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
        raise
