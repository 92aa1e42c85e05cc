#!/bin/sh
# Every test, VM tests included (they boot the default lab once, share it,
# and stop it). Extra arguments go to pytest, e.g. ./test.sh -m "not vm".
set -eu
repo=$(cd "$(dirname "$0")" && pwd)
# Host compile tests of the module need Debian's 6.1 headers; vagrant validates
# the Vagrantfile; the collector's tests talk to a local sshd (started by the
# tests on a free loopback port); libvirt and vagrant-libvirt boot the lab with
# `vagrant up` (started by the test, loopback only, stopped by PID); headless
# Chromium renders the HTML report (the fonts: installs skip recommends).
THRASHLAB_APT_EXTRA="gcc make libc6-dev linux-headers-amd64 dkms openssh-server vagrant vagrant-libvirt libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients chromium fonts-dejavu-core" "$repo/scripts/install.sh"
cd "$repo"
# Tests that need root, mmdebstrap or a tool the line above installs fail
# instead of skipping: this command claims to run them all.
export THRASHLAB_REQUIRE_ALL=1
cleanup() {
    # Whatever happened, leave no VM of this checkout running.
    "$repo/.venv/bin/python" -m localvm down --all >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM
"$repo/.venv/bin/python" -m pytest --durations=25 "$@"
