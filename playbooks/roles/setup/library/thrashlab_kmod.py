#!/usr/bin/python3
# Loads a kernel module from a .ko file with parameters, reloading it only
# when the file or the parameters changed, and checks what it must create.
from __future__ import annotations

DOCUMENTATION = r"""
module: thrashlab_kmod
short_description: Load an out-of-tree kernel module from its .ko, reloading it when it changed
description:
  - Loads O(path) with C(insmod) and the parameters O(params). What was loaded (the
    checksum of the file and the parameters) is recorded in C(/run/thrashlab/<name>.loaded),
    which a reboot clears together with the module.
  - "When the module is loaded but from another file or with other parameters (or by
    someone else), it is unloaded with C(rmmod) and loaded again. A module in use (its
    device open by a monitor, say) cannot be unloaded: that is an error that says so."
  - Then waits until every path of O(check_paths) exists (e.g. C(/proc/pfprof/status),
    C(/dev/pfprof)) and fails if one does not appear within O(timeout) seconds.
  - Supports check mode.
options:
  name:
    description: Name of the module, as in /sys/module/NAME.
    type: str
    required: true
  path:
    description: The built .ko file on the machine.
    type: path
    required: true
  params:
    description: Module parameters, as name/value pairs given to insmod.
    type: dict
    default: {}
  check_paths:
    description: Paths that must exist once the module is loaded.
    type: list
    elements: path
    default: []
  timeout:
    description: Seconds to wait for O(check_paths).
    type: int
    default: 10
"""

RETURN = r"""
action:
  description: C(none), C(load) or C(reload).
  type: str
  returned: always
"""

import hashlib
import os
import time

from ansible.module_utils.basic import AnsibleModule

STAMP_DIR = "/run/thrashlab"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def loaded(name):
    try:
        with open("/sys/module/%s/initstate" % name) as f:
            return f.read().strip() in ("live", "coming")
    except FileNotFoundError:
        return os.path.isdir("/sys/module/%s/sections" % name)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            path=dict(type="path", required=True),
            params=dict(type="dict", default={}),
            check_paths=dict(type="list", elements="path", default=[]),
            timeout=dict(type="int", default=10),
        ),
        supports_check_mode=True,
    )
    name, path = module.params["name"], module.params["path"]
    params = ["%s=%s" % (k, module.params["params"][k]) for k in sorted(module.params["params"])]
    if not os.path.isfile(path):
        module.fail_json(msg="%s does not exist: build the module first" % path)
    wanted = "%s %s" % (sha256_file(path), " ".join(params))
    stamp = os.path.join(STAMP_DIR, name + ".loaded")
    try:
        with open(stamp) as f:
            recorded = f.read().strip()
    except FileNotFoundError:
        recorded = None

    is_loaded = loaded(name)
    if is_loaded and recorded == wanted:
        action = "none"
    else:
        action = "reload" if is_loaded else "load"

    if action != "none" and not module.check_mode:
        if is_loaded:
            rc, out, err = module.run_command(["rmmod", name])
            if rc != 0:
                module.fail_json(msg="cannot unload %s to load the new build (%s); is it in use, e.g. a monitor "
                                     "still running? Stop it and run again." % (name, (err or out).strip()))
        if os.path.exists(stamp):
            os.unlink(stamp)
        rc, out, err = module.run_command(["insmod", path] + params)
        if rc != 0:
            module.fail_json(msg="insmod %s %s failed: %s" % (path, " ".join(params), (err or out).strip()))
        os.makedirs(STAMP_DIR, mode=0o755, exist_ok=True)
        with open(stamp, "w") as f:
            f.write(wanted + "\n")

    if not module.check_mode or action == "none":
        deadline = time.monotonic() + module.params["timeout"]
        while True:
            missing = [p for p in module.params["check_paths"] if not os.path.exists(p)]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if missing:
            module.fail_json(msg="%s is loaded but %s did not appear within %d s"
                                 % (name, ", ".join(missing), module.params["timeout"]), action=action)

    module.exit_json(changed=action != "none", action=action)


if __name__ == "__main__":
    main()
