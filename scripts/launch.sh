#!/bin/sh
# Shared by ./run.sh and ./bench.sh: install what is missing (timed, the job
# reports it), then run a Python module of the project's virtualenv.
#   scripts/launch.sh MODULE [ARGS...]
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
module=$1
shift
started=$(date +%s)
"$repo/scripts/install.sh"
THRASHLAB_INSTALL_SECONDS=$(( $(date +%s) - started ))
export THRASHLAB_INSTALL_SECONDS
cd "$repo"
exec "$repo/.venv/bin/python" -m "$module" "$@"
