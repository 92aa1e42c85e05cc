#!/usr/bin/python3
# The lab file's machine, made so and read back, in one round trip: its swap
# device, zswap, MGLRU and vm.* sysctls, and the build packages dpkg lacks.
from __future__ import annotations

DOCUMENTATION = r"""
module: thrashlab_machine
short_description: A lab machine's swap, zswap, MGLRU and vm.* sysctls, applied now and at every boot, then verified
description:
  - "The swap of O(swap_type): C(file) and C(zswap), a swap file O(swapfile) of exactly O(swap_mb) MiB,
    active and in /etc/fstab (a file of another size, without a swap signature or with holes is
    turned off, recreated with fallocate, else dd, formatted and turned on; it is made inside the
    running machine, as swapon refuses files with holes); C(zram), C(/dev/zram0) of O(swap_mb) MiB
    (uncompressed size), set up by an enabled oneshot unit, C(thrashlab-zram.service), so that a
    reboot sets it up again. The kind not asked for is removed, and with O(swap_disable_others)
    every other swap area is turned off and its /etc/fstab line commented out."
  - Sets zswap on (swap type C(zswap)) or off (C(/sys/module/zswap/parameters/enabled)), the
    multi-generational LRU (C(/sys/kernel/mm/lru_gen/enabled)) and the given C(vm.*) sysctls, in
    the running kernel and in C(/etc/tmpfiles.d/thrashlab.conf) and C(/etc/sysctl.d/90-thrashlab.conf)
    so that a reboot keeps them.
  - Refuses, before changing anything, a machine whose Debian suite or number of online CPUs is not
    O(suite) or O(cpus), and settings that its kernel lacks; afterwards reads the machine back
    (kernel, swap areas, zswap, MGLRU, the sysctls) and fails, naming what differs, when it is not
    what was asked.
  - Reports which of O(packages) dpkg lacks (one call of dpkg-query), for the role's apt task.
  - One SSH round trip for all of it (each costs seconds on an emulated machine). Supports check mode.
options:
  swap_type:
    description: The lab file's swap_type.
    type: str
    choices: [file, zram, zswap]
    required: true
  swap_mb:
    description: Size of the swap file or the zram device in MiB; 0 means no swap.
    type: int
    required: true
  swapfile:
    description: Absolute path of the swap file (swap types file and zswap).
    type: path
    default: /swapfile.thrashlab
  swap_disable_others:
    description:
      - Also turn off every other swap area and comment out the other swap lines of /etc/fstab,
        so that the machine's swap is exactly the lab file's.
    type: bool
    default: false
  zram_priority:
    description: Swap priority of the zram device.
    type: int
    default: 100
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
  packages:
    description: Debian packages whose absence is reported in RV(missing_packages).
    type: list
    elements: str
    default: []
  kernel_headers:
    description: Also report C(linux-headers-<running kernel>) if it is not installed.
    type: bool
    default: false
"""

RETURN = r"""
actions:
  description: What was done (or would be done in check mode), in order.
  type: list
  elements: str
  returned: always
machine:
  description: What the machine is, read back from it after the changes (with the zram algorithm when set up).
  type: dict
  returned: always
kernel:
  description: The running kernel's release (C(uname -r)).
  type: str
  returned: always
missing_packages:
  description: The packages of O(packages) (and the kernel headers) that dpkg does not list as installed.
  type: list
  elements: str
  returned: always
"""

import os
import platform

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.thrashlab_changes import Changes
from ansible.module_utils.thrashlab_swap import ensure_swapfile, ensure_zram, zram_algorithm

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


def missing_packages(module, names):
    """The packages among ``names`` that dpkg does not list as installed."""
    if not names:
        return []
    dpkg_query = module.get_bin_path("dpkg-query")
    if dpkg_query is None:
        module.fail_json(msg="the setup role needs a Debian or Ubuntu machine (no dpkg-query here)")
    _, out, _ = module.run_command([dpkg_query, "--show", "--showformat", "${db:Status-Abbrev} ${Package}\n"]
                                   + list(names))
    installed = {line.split()[-1] for line in out.splitlines() if line.startswith("ii ")}
    return [name for name in names if name not in installed]


def main():
    module = AnsibleModule(
        argument_spec=dict(
            swap_type=dict(type="str", required=True, choices=["file", "zram", "zswap"]),
            swap_mb=dict(type="int", required=True),
            swapfile=dict(type="path", default="/swapfile.thrashlab"),
            swap_disable_others=dict(type="bool", default=False),
            zram_priority=dict(type="int", default=100),
            mglru=dict(type="str", default="default", choices=["default", "on", "off"]),
            sysctl=dict(type="dict", default={}),
            suite=dict(type="str", default=""),
            cpus=dict(type="int", default=0),
            packages=dict(type="list", elements="str", default=[]),
            kernel_headers=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    changes = Changes(module)
    zswap = p["swap_type"] == "zswap"
    sysctl = {str(k): normal(v) for k, v in (p["sysctl"] or {}).items()}

    # Refuse another machine, or what this kernel cannot do, before changing anything.
    wrong = []
    suite = debian_suite()
    if p["suite"] and suite != p["suite"]:
        wrong.append("suite is %s, the lab file says %s" % (suite, p["suite"]))
    if p["cpus"] and online_cpus() != p["cpus"]:
        wrong.append("%d CPUs online, the lab file says %d" % (online_cpus(), p["cpus"]))
    if wrong:
        module.fail_json(msg="the machine is not what the lab file describes: " + "; ".join(wrong),
                         machine=read_back(sysctl))
    if zswap and read(ZSWAP_ENABLED) is None:
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

    # The swap device: the file (or none), then zram (or none); zram0 is
    # spared by the file's disable_others only when it is the lab's swap.
    zram = p["swap_type"] == "zram"
    ensure_swapfile(changes, p["swapfile"], 0 if zram else p["swap_mb"], p["swap_disable_others"],
                    keep=["/dev/zram0"] if zram else [])
    ensure_zram(changes, p["swap_mb"] if zram else 0, p["zram_priority"])

    def write_file(path, text):
        if read(path) == (text.strip() if text else None):
            return
        if text is None:
            if changes.note("remove %s" % path):
                os.unlink(path)
            return
        if changes.note("write %s" % path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                f.write(text)
            os.rename(tmp, path)

    def set_now(path, value, what):
        if changes.note("%s: %s" % (what, value)):
            try:
                with open(path, "w") as f:
                    f.write(value)
            except OSError as e:
                changes.fail("%s: writing %r to %s failed: %s" % (what, value, path, e.strerror))

    # Runtime values first, then the files that set them again at boot
    # (systemd-tmpfiles for sysfs, systemd-sysctl for /proc/sys).
    boot_lines = []
    if read(ZSWAP_ENABLED) is not None:
        want = "Y" if zswap else "N"
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
    if zram:
        machine["zram_algorithm"] = zram_algorithm()
    kernel = platform.release()
    packages = list(p["packages"]) + (["linux-headers-" + kernel] if p["kernel_headers"] else [])
    result = dict(changed=bool(changes.actions), actions=changes.actions, machine=machine, kernel=kernel,
                  missing_packages=missing_packages(module, packages))
    if changes.check:
        module.exit_json(**result)

    # The settings read back, against what was asked.
    if machine["zswap_enabled"] is not None and (machine["zswap_enabled"] == "Y") != zswap:
        wrong.append("zswap enabled is %s" % machine["zswap_enabled"])
    if p["mglru"] != "default" and lru_gen_is_on(machine["lru_gen"]) != (p["mglru"] == "on"):
        wrong.append("lru_gen enabled is %s, mglru %s asked" % (machine["lru_gen"], p["mglru"]))
    for name, value in sysctl.items():
        if machine["sysctl"][name] != value:
            wrong.append("%s is %s, the lab file says %s" % (name, machine["sysctl"][name], value))
    expected_swap = {"file": p["swapfile"], "zswap": p["swapfile"], "zram": "/dev/zram0"}[p["swap_type"]]
    if p["swap_mb"] > 0 and expected_swap not in [a["name"] for a in machine["swaps"]]:
        wrong.append("%s is not an active swap area" % expected_swap)
    if wrong:
        result.pop("changed")
        module.fail_json(msg="the machine is not what the lab file describes: " + "; ".join(wrong), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
