#!/bin/sh
# The main job on the local default testbed, from a fresh machine:
# installs what is missing, builds or reuses the VM image, boots the lab,
# sets the VMs up with Ansible, runs the experiment, prints the comparison,
# and stops the VMs (also when a step fails). Progress on stderr.
#   ./run.sh [--lab FILE] [--keep] [-e VAR=VALUE ...]
exec "$(dirname "$0")/scripts/launch.sh" thrashlab_job.main "$@"
