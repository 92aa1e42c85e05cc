#!/usr/bin/python3
# A swap file of an exact size, created and sized in one round trip.
from __future__ import annotations

DOCUMENTATION = r"""
module: thrashlab_swapfile
short_description: A swap file of an exact size, active and in /etc/fstab
description:
  - Makes O(path) an active swap file of exactly O(size_mb) MiB, listed in /etc/fstab.
    A file of another size, without a swap signature or with holes is turned off,
    recreated (fallocate, else dd), formatted (mkswap) and turned on.
  - With O(size_mb=0) the file is turned off, removed and dropped from /etc/fstab.
  - "The file is created inside the running machine: swapon refuses files with holes,
    such as a zero-filled file in an image made by C(mkfs.ext4 -d)."
  - Supports check mode.
options:
  path:
    description: Absolute path of the swap file.
    type: path
    required: true
  size_mb:
    description: Size in MiB; 0 means no swap file.
    type: int
    required: true
  disable_others:
    description:
      - Also turn off every other swap area and comment out the other swap lines of /etc/fstab,
        so that the machine's swap is exactly this file.
    type: bool
    default: false
  keep:
    description: Swap areas that O(disable_others) leaves on (e.g. C(/dev/zram0) of the swap type zram).
    type: list
    elements: str
    default: []
  fstab:
    description: Keep the file in /etc/fstab so that it is used after a reboot.
    type: bool
    default: true
"""

RETURN = r"""
actions:
  description: What was done (or would be done in check mode), in order.
  type: list
  elements: str
  returned: always
swaps:
  description: The active swap areas afterwards, as /proc/swaps lists them.
  type: list
  elements: str
  returned: always
"""

import os

from ansible.module_utils.basic import AnsibleModule

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


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            size_mb=dict(type="int", required=True),
            disable_others=dict(type="bool", default=False),
            keep=dict(type="list", elements="str", default=[]),
            fstab=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    path = module.params["path"]
    size_mb = module.params["size_mb"]
    if not os.path.isabs(path):
        module.fail_json(msg="path must be absolute: %s" % path)
    if size_mb < 0:
        module.fail_json(msg="size_mb must be 0 or more, got %d" % size_mb)
    size = size_mb * 1024 * 1024
    check = module.check_mode
    actions = []

    def run(argv, what):
        actions.append(what)
        if not check:
            rc, out, err = module.run_command(argv)
            if rc != 0:
                module.fail_json(msg="%s failed (rc=%d): %s" % (" ".join(argv), rc, (err or out).strip()),
                                 actions=actions)

    swaps = active_swaps()
    if module.params["disable_others"]:
        for other in swaps:
            if other != path and other not in module.params["keep"]:
                run(["swapoff", other], "swapoff %s (another swap area)" % other)

    if size_mb == 0:
        if path in swaps:
            run(["swapoff", path], "swapoff %s" % path)
        if os.path.lexists(path):
            actions.append("remove %s" % path)
            if not check:
                os.unlink(path)
    elif not is_good_swapfile(path, size):
        if path in swaps:
            run(["swapoff", path], "swapoff %s (to resize it)" % path)
        if os.path.lexists(path):
            actions.append("remove %s" % path)
            if not check:
                os.unlink(path)
        actions.append("create %s of %d MiB" % (path, size_mb))
        if not check:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
            rc, _, _ = module.run_command(["fallocate", "-l", str(size), path])
            if rc != 0 or not is_allocated(path, size):
                # e.g. a filesystem without fallocate support: write the blocks
                run(["dd", "if=/dev/zero", "of=" + path, "bs=1M", "count=%d" % size_mb, "conv=fsync"],
                    "fill %s with dd" % path)
        run(["mkswap", path], "mkswap %s" % path)
        run(["swapon", path], "swapon %s" % path)
    elif path not in swaps:
        run(["swapon", path], "swapon %s" % path)

    if module.params["fstab"]:
        old = fstab_lines()
        new = desired_fstab(old, path, size_mb > 0, module.params["disable_others"], module.params["keep"])
        if new != old:
            actions.append("update %s" % FSTAB)
            if not check:
                write_atomically(FSTAB, new)

    module.exit_json(changed=bool(actions), actions=actions, swaps=active_swaps())


def is_allocated(path, size):
    st = os.stat(path)
    return st.st_size == size and st.st_blocks * 512 >= size


if __name__ == "__main__":
    main()
