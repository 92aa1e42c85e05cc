#!/bin/sh
# Installs what thrashlab needs on a Debian or Ubuntu machine: the Debian
# packages (only those missing) and a virtualenv in .venv with the project
# and its Python dependencies (re-installed only when pyproject.toml changes).
# Sourced by run.sh and test.sh; safe to run again.
#   THRASHLAB_APT_EXTRA   more Debian packages (test.sh adds its own)
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)

apt_packages="qemu-system-x86 qemu-utils mmdebstrap e2fsprogs openssh-client python3 python3-venv python3-pip git tar ${THRASHLAB_APT_EXTRA:-}"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

missing=""
for pkg in $apt_packages; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    echo "install: Debian packages:$missing"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi

venv="$repo/.venv"
stamp="$venv/.thrashlab-installed"
want=$(cat "$repo/pyproject.toml" | sha256sum | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ]; then
    echo "install: virtualenv in $venv"
    python3 -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "install: Python packages (pip install -e '.[test]')"
    "$venv/bin/pip" install -q --disable-pip-version-check -e "$repo[test]"
    echo "$want" > "$stamp"
fi
