# The lab machine's swap device: a swap file of an exact size (swap types
# file and zswap) or a zram device of an exact size (swap type zram), each
# active now and after a reboot, and nothing else when asked. Used by the
# thrashlab_machine module; no Ansible import, so the tests load it directly.
from __future__ import annotations

import os
import re

FSTAB = "/etc/fstab"
DISABLED_PREFIX = "# disabled by thrashlab (setup_swap_disable_others): "
SIGNATURES = (b"SWAPSPACE2", b"SWAP-SPACE")


def active_swaps():
    with open("/proc/swaps") as f:
        lines = f.read().splitlines()[1:]
    # /proc/swaps escapes blanks in names as \040
    return [line.split()[0].replace("\\040", " ") for line in lines if line.strip()]


def is_good_swapfile(path, size):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    if st.st_size != size or st.st_blocks * 512 < size:  # wrong size, or holes
        return False
    page = os.sysconf("SC_PAGE_SIZE")
    with open(path, "rb") as f:
        f.seek(page - 10)
        return f.read(10) in SIGNATURES


def fstab_lines():
    try:
        with open(FSTAB) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def desired_fstab(lines, path, present, disable_others, keep=()):
    """Our line in place (or appended), other swap lines commented out if asked."""
    ours = "%s none swap sw 0 0" % path
    out = []
    have_ours = False
    for line in lines:
        fields = line.split()
        is_swap = len(fields) >= 3 and not fields[0].startswith("#") and fields[2] == "swap"
        if is_swap and fields[0] == path:
            if present and not have_ours:
                out.append(line if fields[1:4] == ["none", "swap", "sw"] else ours)
                have_ours = True
            continue
        if is_swap and disable_others and fields[0] not in keep:
            out.append(DISABLED_PREFIX + line)
            continue
        out.append(line)
    if present and not have_ours:
        out.append(ours)
    return out


def write_atomically(path, lines):
    tmp = path + ".thrashlab.tmp"
    st = os.stat(path) if os.path.exists(path) else None
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    if st is not None:
        os.chmod(tmp, st.st_mode & 0o7777)
        os.chown(tmp, st.st_uid, st.st_gid)
    os.rename(tmp, path)


def is_allocated(path, size):
    st = os.stat(path)
    return st.st_size == size and st.st_blocks * 512 >= size



def ensure_swapfile(changes, path, size_mb, disable_others=False, keep=(), fstab=True):
    """``path`` an active swap file of exactly ``size_mb`` MiB, in /etc/fstab
    (0: no swap file: turned off, removed, dropped from fstab). The file is
    made in the running machine (fallocate, else dd): swapon refuses files
    with holes, such as a zero-filled file in an image made by mkfs -d."""
    if not os.path.isabs(path):
        changes.fail("the swap file's path must be absolute: %s" % path)
    if size_mb < 0:
        changes.fail("swap_mb must be 0 or more, got %d" % size_mb)
    size = size_mb * 1024 * 1024
    swaps = active_swaps()
    if disable_others:
        for other in swaps:
            if other != path and other not in keep:
                changes.run(["swapoff", other], "swapoff %s (another swap area)" % other)

    if size_mb == 0:
        if path in swaps:
            changes.run(["swapoff", path], "swapoff %s" % path)
        if os.path.lexists(path) and changes.note("remove %s" % path):
            os.unlink(path)
    elif not is_good_swapfile(path, size):
        if path in swaps:
            changes.run(["swapoff", path], "swapoff %s (to resize it)" % path)
        if os.path.lexists(path) and changes.note("remove %s" % path):
            os.unlink(path)
        if changes.note("create %s of %d MiB" % (path, size_mb)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
            rc, _, _ = changes.module.run_command(["fallocate", "-l", str(size), path])
            if rc != 0 or not is_allocated(path, size):
                # e.g. a filesystem without fallocate support: write the blocks
                changes.run(["dd", "if=/dev/zero", "of=" + path, "bs=1M", "count=%d" % size_mb, "conv=fsync"],
                            "fill %s with dd" % path)
        changes.run(["mkswap", path], "mkswap %s" % path)
        changes.run(["swapon", path], "swapon %s" % path)
    elif path not in swaps:
        changes.run(["swapon", path], "swapon %s" % path)

    if fstab:
        old = fstab_lines()
        new = desired_fstab(old, path, size_mb > 0, disable_others, keep)
        if new != old and changes.note("update %s" % FSTAB):
            write_atomically(FSTAB, new)


# --- zram --------------------------------------------------------------------

ZRAM_UNIT_NAME = "thrashlab-zram.service"
ZRAM_UNIT = "/etc/systemd/system/" + ZRAM_UNIT_NAME
ZRAM_DEVICE = "/dev/zram0"
ZRAM_SYSFS = "/sys/block/zram0"


def zram_unit_text(size_mb, priority):
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
""".format(dev=ZRAM_DEVICE, sys=ZRAM_SYSFS, size=size_mb, prio=priority)


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def zram_is_active(size_mb):
    disksize = (_read(ZRAM_SYSFS + "/disksize") or "0").strip()
    return ZRAM_DEVICE in active_swaps() and disksize == str(size_mb * 1024 * 1024)


def zram_algorithm():
    m = re.search(r"\[([^]]+)\]", _read(ZRAM_SYSFS + "/comp_algorithm") or "")
    return m.group(1) if m else None


def ensure_zram(changes, size_mb, priority=100):
    """/dev/zram0 a swap area of ``size_mb`` MiB (uncompressed), set up by an
    enabled oneshot unit so that a reboot sets it up again (0: the unit
    stopped, disabled and removed, the device reset)."""
    if size_mb < 0:
        changes.fail("swap_mb must be 0 or more, got %d" % size_mb)
    if size_mb == 0:
        if os.path.exists(ZRAM_UNIT):
            changes.run(["systemctl", "disable", "--now", ZRAM_UNIT_NAME], "stop and disable " + ZRAM_UNIT_NAME,
                        ignore_errors=True)
            if changes.note("remove " + ZRAM_UNIT):
                os.unlink(ZRAM_UNIT)
            changes.run(["systemctl", "daemon-reload"], "systemctl daemon-reload")
        return
    text = zram_unit_text(size_mb, priority)
    unit_changed = _read(ZRAM_UNIT) != text
    if unit_changed:
        if changes.note("write " + ZRAM_UNIT):
            tmp = ZRAM_UNIT + ".tmp"
            with open(tmp, "w") as f:
                f.write(text)
            os.rename(tmp, ZRAM_UNIT)
        changes.run(["systemctl", "daemon-reload"], "systemctl daemon-reload")
    _, out, _ = changes.module.run_command(["systemctl", "is-enabled", ZRAM_UNIT_NAME])
    if out.strip() != "enabled":
        changes.run(["systemctl", "enable", ZRAM_UNIT_NAME], "enable " + ZRAM_UNIT_NAME)
    if unit_changed or not zram_is_active(size_mb):
        changes.run(["systemctl", "restart", ZRAM_UNIT_NAME], "set up %s of %d MiB" % (ZRAM_DEVICE, size_mb))
        if not changes.check and not zram_is_active(size_mb):
            changes.fail("%s is not an active swap area of %d MiB after starting %s"
                         % (ZRAM_DEVICE, size_mb, ZRAM_UNIT_NAME))
