"""Compile kmod/ against Debian kernel headers of another suite, in a chroot.

The host is Debian bookworm with 6.1 headers under /usr/src; trixie (6.12) and
sid (7.x) headers come from minimal chroots built once with mmdebstrap and
cached under ${XDG_CACHE_HOME:-~/.cache}/thrashlab/chroots/<suite>-<hash>.
The hash covers every input of the build (suite, apt sources, packages, apt
options), so a changed input builds a new chroot instead of reusing a stale one.

kmod/ is copied into the chroot; make runs in private mount and pid
namespaces with /proc mounted inside (objtool reads /proc/self/limits), so
nothing stays mounted when it ends. Needs root.

    python tests/pfprof/compile_chroot.py trixie [sid ...]   # build + compile
"""
from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from thrashlab.aptsources import write_sources_for_suite  # noqa: E402

# perl: W=1 runs scripts/kernel-doc, which needs Pod::Usage (not in minbase)
PACKAGES = "gcc,make,libc6-dev,perl,linux-headers-amd64"
# sid's Release files may be older than their Valid-Until on a snapshot mirror
APT_OPTIONS = {"sid": ['Acquire::Check-Valid-Until "false"']}


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "thrashlab" / "chroots"


def _inputs(suite: str, sources_text: str) -> str:
    return "\n".join([suite, sources_text, PACKAGES, *APT_OPTIONS.get(suite, []),
                      "variant=minbase"])


def chroot_for_suite(suite: str, log=sys.stderr) -> Path:
    """Return a ready chroot for ``suite``, building it if not cached."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        sources = write_sources_for_suite(suite, Path(tmp) / "sources.list")
        sources_text = sources.read_text()
        digest = hashlib.sha256(_inputs(suite, sources_text).encode()).hexdigest()[:12]
        final = root / f"{suite}-{digest}"
        if (final / ".thrashlab-complete").is_file():
            return final
        staging = Path(tmp) / "root"
        cmd = ["mmdebstrap", "--variant=minbase", f"--include={PACKAGES}"]
        cmd += [f"--aptopt={opt}" for opt in APT_OPTIONS.get(suite, [])]
        cmd += [suite, str(staging), str(sources)]
        print("+", " ".join(cmd), file=log, flush=True)
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
        (staging / ".thrashlab-complete").write_text(_inputs(suite, sources_text) + "\n")
        if final.exists():  # an incomplete leftover of an interrupted build
            shutil.rmtree(final)
        try:
            os.rename(staging, final)
        except OSError:
            if not (final / ".thrashlab-complete").is_file():  # lost a race: fine if complete
                raise
    return final


def headers_in(chroot: Path) -> str:
    """The in-chroot path of the amd64 kernel headers."""
    found = sorted(glob.glob(str(chroot / "usr/src/linux-headers-*-amd64")))
    if not found:
        raise RuntimeError(f"no linux-headers-*-amd64 in {chroot}/usr/src")
    return "/" + str(Path(found[-1]).relative_to(chroot))


def compile_in_chroot(chroot: Path, kmod_src: Path, make_args=()) -> subprocess.CompletedProcess:
    """Copy kmod_src into the chroot and build it there; output in .stdout."""
    work = Path(tempfile.mkdtemp(prefix="pfprof-build-", dir=chroot / "tmp"))
    try:
        shutil.copytree(kmod_src, work / "kmod",
                        ignore=shutil.ignore_patterns("*.o", "*.ko", "*.mod*", ".*.cmd",
                                                      "Module.symvers", "modules.order",
                                                      ".tmp_versions"))
        inside = "/" + str((work / "kmod").relative_to(chroot))
        cmd = ["unshare", "--mount", "--pid", "--fork", f"--mount-proc={chroot}/proc",
               "chroot", str(chroot), "make", "-C", inside,
               f"KDIR={headers_in(chroot)}", *make_args]
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                              "LC_ALL": "C"})
    finally:
        shutil.rmtree(work, ignore_errors=True)


def host_kdirs() -> list[str]:
    """Debian bookworm header trees installed on the host."""
    return sorted(glob.glob("/usr/src/linux-headers-6.1.*-amd64"))


def compile_on_host(kdir: str, kmod_src: Path, make_args=()) -> subprocess.CompletedProcess:
    """Build a copy of kmod_src against kdir (the source tree stays clean)."""
    with tempfile.TemporaryDirectory(prefix="pfprof-build-") as tmp:
        shutil.copytree(kmod_src, Path(tmp) / "kmod",
                        ignore=shutil.ignore_patterns("*.o", "*.ko", "*.mod*", ".*.cmd"))
        return subprocess.run(["make", "-C", str(Path(tmp) / "kmod"), f"KDIR={kdir}", *make_args],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "LC_ALL": "C"})


def main(argv: list[str]) -> int:
    kmod = REPO / "kmod"
    status = 0
    for suite in argv or ["trixie", "sid"]:
        chroot = chroot_for_suite(suite)
        print(f"== {suite}: {chroot} ({headers_in(chroot)})")
        if (kmod / "Makefile").is_file():
            result = compile_in_chroot(chroot, kmod)
            print(result.stdout)
            status |= result.returncode
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
