#!/usr/bin/python3
# A zram swap device of an exact size, set up now and at every boot.
from __future__ import annotations

DOCUMENTATION = r"""
module: thrashlab_zram
short_description: A zram swap device of an exact size, active now and after a reboot
description:
  - With O(size_mb) above 0, C(/dev/zram0) is a swap area of O(size_mb) MiB (uncompressed
    size), made by a oneshot systemd unit (C(thrashlab-zram.service)) that is enabled, so that
    a reboot sets it up again. A device of another size is set up anew.
  - With O(size_mb=0) the unit is stopped, disabled and removed, and the device reset.
  - The compression algorithm is the kernel's default; the result reports it.
  - Supports check mode.
options:
  size_mb:
    description: Size in MiB; 0 means no zram swap.
    type: int
    required: true
  priority:
    description: Swap priority of the device.
    type: int
    default: 100
"""

RETURN = r"""
actions:
  description: What was done (or would be done in check mode), in order.
  type: list
  elements: str
  returned: always
algorithm:
  description: The device's compression algorithm (the selected one of comp_algorithm), if set up.
  type: str
  returned: when size_mb > 0
"""

import os
import re

from ansible.module_utils.basic import AnsibleModule

UNIT_NAME = "thrashlab-zram.service"
UNIT = "/etc/systemd/system/" + UNIT_NAME
DEVICE = "/dev/zram0"
SYSFS = "/sys/block/zram0"


def unit_text(size_mb, priority):
    # Before swap.target, like a swap line of fstab; stopping it frees the device.
    return """# Written by thrashlab's setup role (swap_type zram); changes are overwritten.
[Unit]
Description=thrashlab: zram swap of the lab file's size
DefaultDependencies=no
Before=swap.target shutdown.target
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/sbin/modprobe zram num_devices=1
ExecStart=-/sbin/swapoff {dev}
ExecStart=/bin/sh -c 'echo 1 > {sys}/reset && echo {size}M > {sys}/disksize'
ExecStart=/sbin/mkswap {dev}
ExecStart=/sbin/swapon -p {prio} {dev}
ExecStop=-/sbin/swapoff {dev}
ExecStop=-/bin/sh -c 'echo 1 > {sys}/reset'

[Install]
WantedBy=swap.target
""".format(dev=DEVICE, sys=SYSFS, size=size_mb, prio=priority)


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def device_is_active(size_mb):
    swaps = [line.split()[0] for line in (read("/proc/swaps") or "").splitlines()[1:] if line.strip()]
    disksize = (read(SYSFS + "/disksize") or "0").strip()
    return DEVICE in swaps and disksize == str(size_mb * 1024 * 1024)


def algorithm():
    m = re.search(r"\[([^]]+)\]", read(SYSFS + "/comp_algorithm") or "")
    return m.group(1) if m else None


def main():
    module = AnsibleModule(
        argument_spec=dict(size_mb=dict(type="int", required=True),
                           priority=dict(type="int", default=100)),
        supports_check_mode=True,
    )
    size_mb, priority = module.params["size_mb"], module.params["priority"]
    if size_mb < 0:
        module.fail_json(msg="size_mb must be 0 or more, got %d" % size_mb)
    check = module.check_mode
    actions = []

    def run(argv, what, ignore_errors=False):
        actions.append(what)
        if not check:
            rc, out, err = module.run_command(argv)
            if rc != 0 and not ignore_errors:
                module.fail_json(msg="%s failed (rc=%d): %s" % (" ".join(argv), rc, (err or out).strip()),
                                 actions=actions)

    if size_mb == 0:
        if os.path.exists(UNIT):
            run(["systemctl", "disable", "--now", UNIT_NAME], "stop and disable " + UNIT_NAME,
                ignore_errors=True)
            actions.append("remove " + UNIT)
            if not check:
                os.unlink(UNIT)
            run(["systemctl", "daemon-reload"], "systemctl daemon-reload")
        module.exit_json(changed=bool(actions), actions=actions)

    text = unit_text(size_mb, priority)
    unit_changed = read(UNIT) != text
    if unit_changed:
        actions.append("write " + UNIT)
        if not check:
            tmp = UNIT + ".tmp"
            with open(tmp, "w") as f:
                f.write(text)
            os.rename(tmp, UNIT)
        run(["systemctl", "daemon-reload"], "systemctl daemon-reload")
    rc, out, _ = module.run_command(["systemctl", "is-enabled", UNIT_NAME])
    if out.strip() != "enabled":
        run(["systemctl", "enable", UNIT_NAME], "enable " + UNIT_NAME)
    if unit_changed or not device_is_active(size_mb):
        run(["systemctl", "restart", UNIT_NAME], "set up %s of %d MiB" % (DEVICE, size_mb))
        if not check and not device_is_active(size_mb):
            module.fail_json(msg="%s is not an active swap area of %d MiB after starting %s"
                             % (DEVICE, size_mb, UNIT_NAME), actions=actions)
    module.exit_json(changed=bool(actions), actions=actions, algorithm=algorithm())


if __name__ == "__main__":
    main()
