#!/usr/bin/python3
# The machine's memory settings of the lab file, applied, persisted and read back.
from __future__ import annotations

DOCUMENTATION = r"""
module: thrashlab_machine
short_description: zswap, MGLRU and vm.* sysctls of a lab machine, applied now and at every boot, then verified
description:
  - Sets zswap on or off (C(/sys/module/zswap/parameters/enabled)), the multi-generational LRU
    (C(/sys/kernel/mm/lru_gen/enabled)) and the given C(vm.*) sysctls, in the running kernel and
    in C(/etc/tmpfiles.d/thrashlab.conf) and C(/etc/sysctl.d/90-thrashlab.conf) so that a reboot
    keeps them.
  - Then reads the machine back (Debian suite, online CPUs, kernel, swap areas, zswap, MGLRU, the
    sysctls) and fails, naming what differs, when it is not what O(suite), O(cpus) and the
    settings ask for.
  - Supports check mode.
options:
  zswap:
    description: zswap on (the swap type zswap) or off (a plain swap file or zram).
    type: bool
    required: true
  mglru:
    description: C(default) leaves the kernel's own setting, C(on) or C(off) force it.
    type: str
    choices: [default, "on", "off"]
    default: default
  sysctl:
    description: C(vm.*) settings, name to value.
    type: dict
    default: {}
  suite:
    description: The Debian suite the machine must run (bookworm, trixie, sid); not checked when empty.
    type: str
    default: ""
  cpus:
    description: The number of online CPUs the machine must have; not checked when 0.
    type: int
    default: 0
"""

RETURN = r"""
actions:
  description: What was done (or would be done in check mode), in order.
  type: list
  elements: str
  returned: always
machine:
  description: What the machine is, read back from it after the changes.
  type: dict
  returned: always
"""

import os
import platform

from ansible.module_utils.basic import AnsibleModule

TMPFILES = "/etc/tmpfiles.d/thrashlab.conf"
SYSCTL_CONF = "/etc/sysctl.d/90-thrashlab.conf"
ZSWAP_ENABLED = "/sys/module/zswap/parameters/enabled"
ZSWAP_COMPRESSOR = "/sys/module/zswap/parameters/compressor"
LRU_GEN = "/sys/kernel/mm/lru_gen/enabled"
HEADER = "# Written by thrashlab's setup role from the lab file; changes are overwritten.\n"


def read(path, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def debian_suite():
    """bookworm, trixie, ... from os-release; sid says so only in debian_version ("forky/sid")."""
    if (read("/etc/debian_version") or "").endswith("/sid"):
        return "sid"
    for line in (read("/etc/os-release") or "").splitlines():
        key, _, value = line.partition("=")
        if key == "VERSION_CODENAME":
            return value.strip('"')
    return None


def online_cpus():
    count = 0
    for part in (read("/sys/devices/system/cpu/online") or "").split(","):
        lo, _, hi = part.partition("-")
        if lo.isdigit():
            count += (int(hi) if hi.isdigit() else int(lo)) - int(lo) + 1
    return count or os.cpu_count()


def swap_areas():
    """/proc/swaps as a list of {name, type, size_kb, priority}."""
    areas = []
    for line in (read("/proc/swaps") or "").splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5:
            areas.append({"name": fields[0].replace("\\040", " "), "type": fields[1],
                          "size_kb": int(fields[2]), "priority": int(fields[4])})
    return areas


def sysctl_path(name):
    return "/proc/sys/" + name.replace(".", "/")


def normal(value):
    return " ".join(str(value).split())


def lru_gen_is_on(value):
    # 0x0007 (all features) or any bit set is on; 0x0000 is off.
    try:
        return int(value, 16) != 0
    except (TypeError, ValueError):
        return None


def read_back(sysctl_names):
    machine = {
        "suite": debian_suite(),
        "kernel": platform.release(),
        "online_cpus": online_cpus(),
        "swaps": swap_areas(),
        "zswap_enabled": read(ZSWAP_ENABLED),
        "zswap_compressor": read(ZSWAP_COMPRESSOR),
        "lru_gen": read(LRU_GEN),
        "sysctl": {name: normal(read(sysctl_path(name), "")) for name in sorted(sysctl_names)},
    }
    return machine


def main():
    module = AnsibleModule(
        argument_spec=dict(
            zswap=dict(type="bool", required=True),
            mglru=dict(type="str", default="default", choices=["default", "on", "off"]),
            sysctl=dict(type="dict", default={}),
            suite=dict(type="str", default=""),
            cpus=dict(type="int", default=0),
        ),
        supports_check_mode=True,
    )
    p = module.params
    check = module.check_mode
    actions = []
    sysctl = {str(k): normal(v) for k, v in (p["sysctl"] or {}).items()}

    # Refuse what this kernel cannot do before changing anything.
    if p["zswap"] and read(ZSWAP_ENABLED) is None:
        module.fail_json(msg="swap_type zswap: this kernel (%s) has no zswap (%s is missing)"
                         % (platform.release(), ZSWAP_ENABLED))
    if p["mglru"] != "default" and read(LRU_GEN) is None:
        module.fail_json(msg="mglru %s: this kernel (%s) has no multi-generational LRU "
                         "(CONFIG_LRU_GEN; %s is missing)" % (p["mglru"], platform.release(), LRU_GEN))
    for name in sysctl:
        if not name.startswith("vm.") or ".." in name or "/" in name:
            module.fail_json(msg="sysctl %s: only vm.* settings are allowed" % name)
        if read(sysctl_path(name)) is None:
            module.fail_json(msg="sysctl %s: this kernel (%s) has no such setting (%s is missing)"
                             % (name, platform.release(), sysctl_path(name)))

    def write_file(path, text):
        if read(path) == (text.strip() if text else None):
            return
        if text is None:
            actions.append("remove %s" % path)
            if not check:
                os.unlink(path)
            return
        actions.append("write %s" % path)
        if not check:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                f.write(text)
            os.rename(tmp, path)

    def set_now(path, value, what):
        actions.append("%s: %s" % (what, value))
        if not check:
            try:
                with open(path, "w") as f:
                    f.write(value)
            except OSError as e:
                module.fail_json(msg="%s: writing %r to %s failed: %s" % (what, value, path, e.strerror),
                                 actions=actions)

    # Runtime values first, then the files that set them again at boot
    # (systemd-tmpfiles for sysfs, systemd-sysctl for /proc/sys).
    boot_lines = []
    if read(ZSWAP_ENABLED) is not None:
        want = "Y" if p["zswap"] else "N"
        if read(ZSWAP_ENABLED) != want:
            set_now(ZSWAP_ENABLED, want, "zswap enabled")
        boot_lines.append("w %s - - - - %s" % (ZSWAP_ENABLED, want))
    if p["mglru"] != "default":
        want_on = p["mglru"] == "on"
        if lru_gen_is_on(read(LRU_GEN)) != want_on:
            set_now(LRU_GEN, "y" if want_on else "n", "lru_gen enabled")
        boot_lines.append("w %s - - - - %s" % (LRU_GEN, "y" if want_on else "n"))
    write_file(TMPFILES, HEADER + "\n".join(boot_lines) + "\n" if boot_lines else None)

    for name, value in sorted(sysctl.items()):
        if normal(read(sysctl_path(name))) != value:
            set_now(sysctl_path(name), value, name)
    write_file(SYSCTL_CONF, HEADER + "".join("%s = %s\n" % kv for kv in sorted(sysctl.items()))
               if sysctl else None)

    machine = read_back(sysctl)
    if check:
        module.exit_json(changed=bool(actions), actions=actions, machine=machine)

    # What the machine is, against what the lab file says.
    wrong = []
    if p["suite"] and machine["suite"] != p["suite"]:
        wrong.append("suite is %s, the lab file says %s" % (machine["suite"], p["suite"]))
    if p["cpus"] and machine["online_cpus"] != p["cpus"]:
        wrong.append("%d CPUs online, the lab file says %d" % (machine["online_cpus"], p["cpus"]))
    if machine["zswap_enabled"] is not None and (machine["zswap_enabled"] == "Y") != p["zswap"]:
        wrong.append("zswap enabled is %s" % machine["zswap_enabled"])
    if p["mglru"] != "default" and lru_gen_is_on(machine["lru_gen"]) != (p["mglru"] == "on"):
        wrong.append("lru_gen enabled is %s, mglru %s asked" % (machine["lru_gen"], p["mglru"]))
    for name, value in sysctl.items():
        if machine["sysctl"][name] != value:
            wrong.append("%s is %s, the lab file says %s" % (name, machine["sysctl"][name], value))
    if wrong:
        module.fail_json(msg="the machine is not what the lab file describes: " + "; ".join(wrong),
                         actions=actions, machine=machine)
    module.exit_json(changed=bool(actions), actions=actions, machine=machine)


if __name__ == "__main__":
    main()
