"""Compile kmod/ against Debian bookworm (6.1, host headers), trixie (6.12) and
sid (7.x) kernel headers (chroots, see tests/pfprof/compile_chroot.py) and
require a build without a single warning, plain and with W=1 -Werror.

A missing prerequisite (root, mmdebstrap, dkms, the host's 6.1 headers) is a
skip in a plain run and a failure with THRASHLAB_REQUIRE_ALL=1 (set by
./test.sh), so CI cannot pass without building for all three kernels."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from conftest import require

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "pfprof"))

import compile_chroot  # noqa: E402

KMOD = REPO / "kmod"

pytestmark = pytest.mark.slow

# "plain" is built with V=1: only the commands are printed besides, which the
# feature tests read; each build is made once and checked by every test of it.
VARIANTS = {"plain": ["V=1"], "W1-Werror": ["W=1", "WERROR=1"]}
_BUILDS: dict = {}


def _host_build(kdir: str, variant: str):
    key = ("host", kdir, variant)
    if key not in _BUILDS:
        _BUILDS[key] = compile_chroot.compile_on_host(kdir, KMOD, VARIANTS[variant])
    return _BUILDS[key]


def _chroot_build(chroot: Path, variant: str):
    key = ("chroot", str(chroot), variant)
    if key not in _BUILDS:
        _BUILDS[key] = compile_chroot.compile_in_chroot(chroot, KMOD, VARIANTS[variant])
    return _BUILDS[key]


def _check(result):
    out = result.stdout
    assert result.returncode == 0, out[-4000:]
    warnings = [line for line in out.splitlines() if "warning:" in line.lower()]
    assert not warnings, "\n".join(warnings)
    assert "pfprof.ko" in out, out[-2000:]



def _needs_root():
    require(os.geteuid() == 0, "chroot compiles need root")


def _host_kdirs() -> list[str]:
    kdirs = compile_chroot.host_kdirs()
    require(bool(kdirs), "no linux-headers-6.1.*-amd64 under /usr/src")
    return kdirs


@pytest.mark.parametrize("variant", VARIANTS)
def test_bookworm_host_headers(variant):
    for kdir in _host_kdirs():
        _check(_host_build(kdir, variant))


def test_feature_tests_on_6_1():
    """6.1 has no vm_flags_set(): the Kbuild grep must not claim it."""
    for kdir in _host_kdirs():
        result = _host_build(kdir, "plain")  # V=1
        _check(result)
        assert "-DPFPROF_HAVE_VM_FLAGS_SET" not in result.stdout


@pytest.fixture(scope="module", params=["trixie", "sid"])
def suite_chroot(request):
    _needs_root()
    require(bool(shutil.which("mmdebstrap")), "mmdebstrap is not installed")
    return compile_chroot.chroot_for_suite(request.param)


@pytest.mark.parametrize("variant", VARIANTS)
def test_chroot_headers(suite_chroot, variant):
    _check(_chroot_build(suite_chroot, variant))


def test_feature_tests_detected(suite_chroot):
    """The Kbuild greps find the new interfaces in 6.12 and 7.x headers."""
    result = _chroot_build(suite_chroot, "plain")  # V=1
    _check(result)
    assert "-DPFPROF_HAVE_VM_FLAGS_SET" in result.stdout


def test_uapi_header_compiles_in_user_space(tmp_path):
    """pfprof.h is usable from C user space with -Wall -Wextra -pedantic."""
    src = tmp_path / "t.c"
    src.write_text('#include "pfprof.h"\n#include <stddef.h>\n'
                   "_Static_assert(sizeof(struct pfprof_record) == 48, \"record\");\n"
                   "_Static_assert(offsetof(struct pfprof_ring_header, data_tail) == 128, \"tail\");\n"
                   "int main(void) { return PFPROF_VERSION != 1; }\n")
    import subprocess
    r = subprocess.run(["gcc", "-std=c11", "-Wall", "-Wextra", "-pedantic", "-Werror",
                        f"-I{KMOD}", str(src), "-o", str(tmp_path / "t")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_dkms_build(tmp_path):
    """dkms.conf is valid: `dkms build` against the host's 6.1 headers, in a
    private dkms tree (nothing installed)."""
    require(bool(shutil.which("dkms")), "dkms is not installed")
    _needs_root()
    kdir = _host_kdirs()[-1]
    release = Path(kdir).name.removeprefix("linux-headers-")
    conf = (KMOD / "dkms.conf").read_text()
    version = conf.split('PACKAGE_VERSION="', 1)[1].split('"', 1)[0]
    src, tree = tmp_path / "src", tmp_path / "tree"
    shutil.copytree(KMOD, src / f"pfprof-{version}",
                    ignore=shutil.ignore_patterns("*.o", "*.ko", "*.mod*", ".*.cmd"))
    tree.mkdir()
    import subprocess
    r = subprocess.run(["dkms", "build", "-m", "pfprof", "-v", version, "-k", release,
                        "--dkmstree", str(tree), "--sourcetree", str(src),
                        "--kernelsourcedir", kdir],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:]
    assert list(tree.glob(f"pfprof/{version}/{release}/*/module/pfprof.ko*")), r.stdout[-2000:]
