#!/usr/bin/python3
# Unpacks and builds the source trees of a tar on the machine, each only when
# its sources (or the running kernel, or its make arguments) changed. Its
# action plugin (action_plugins/thrashlab_build.py) packs the tar on the
# controller and passes it in archive_b64.
from __future__ import annotations

DOCUMENTATION = r"""
module: thrashlab_build
short_description: Copy source trees to the machine and build them with make, only when they changed
description:
  - The action plugin packs the directories O(trees) of O(src) on the controller into a
    reproducible tar (sorted, no time stamps, owner root, mode 0644 or 0755), leaving out what
    matches O(exclude), and sends it with the module's arguments.
  - For each tree, the module computes a digest
    of its files in the tar, its make arguments and the running kernel (C(uname -r)). When the
    digest differs from the one recorded by the last successful build in
    C(<dest>/<tree>/.thrashlab-build), or a product is missing, the tree is unpacked afresh into
    C(<dest>/<tree>) and built with C(make); the digest is recorded only once the build and its
    products are there, so a failed build is retried on the next run.
  - Supports check mode (reports which trees would be built).
options:
  src:
    description: Directory on the controller that holds the trees (action plugin).
    type: path
    required: true
  exclude:
    description:
      - Shell patterns of files and directories to leave out (action plugin). A pattern
        without C(/) is matched against each file and directory name, one with C(/) against
        the path inside the tar (C(workloads/work)).
    type: list
    elements: str
    default: []
  archive_b64:
    description: The tar, base64-encoded; set by the action plugin, not by tasks.
    type: str
  dest:
    description: Directory that receives one subdirectory per tree.
    type: path
    required: true
  trees:
    description: The trees to build.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Top-level directory of the tar.
        type: str
        required: true
      products:
        description: Files that the build must leave in the tree (paths relative to it).
        type: list
        elements: str
        default: []
      make_args:
        description: Extra arguments of make (targets, variables such as C(KDIR=...)).
        type: list
        elements: str
        default: []
"""

RETURN = r"""
built:
  description: The trees that were built (or would be, in check mode).
  type: list
  elements: str
  returned: always
digests:
  description: The digest of each tree.
  type: dict
  returned: always
output:
  description: Output of each make run, by tree (at most the last 4000 characters).
  type: dict
  returned: always
"""

import base64
import hashlib
import io
import os
import shutil
import tarfile

from ansible.module_utils.basic import AnsibleModule

STAMP = ".thrashlab-build"


def open_tar(archive):
    return tarfile.open(fileobj=io.BytesIO(archive), mode="r:")


def tree_digests(archive, names, kernel, make_args):
    hashes = {name: hashlib.sha256() for name in names}
    with open_tar(archive) as tar:
        for member in tar.getmembers():
            top = member.name.split("/", 1)[0]
            if top not in hashes or not member.isfile():
                continue
            h = hashes[top]
            h.update(("%s\0%o\0%d\0" % (member.name, member.mode, member.size)).encode())
            h.update(tar.extractfile(member).read())
    out = {}
    for name, h in hashes.items():
        h.update(("\0kernel=%s\0make=%s" % (kernel, "\0".join(make_args[name]))).encode())
        out[name] = h.hexdigest()
    return out


def unpack(archive, name, target):
    with open_tar(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.split("/", 1)[0] == name]
        for m in members:
            parts = m.name.split("/")
            if m.name.startswith("/") or ".." in parts or not (m.isfile() or m.isdir()):
                raise ValueError("refusing tar member %r" % m.name)
        for m in members:
            rel = m.name.split("/", 1)[1] if "/" in m.name else ""
            path = os.path.join(target, rel)
            if m.isdir():
                os.makedirs(path, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with tar.extractfile(m) as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.chmod(path, m.mode & 0o755)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            # src and exclude are for the action plugin, which sends archive_b64
            src=dict(type="path"),
            exclude=dict(type="list", elements="str", default=[]),
            archive_b64=dict(type="str", no_log=True),
            dest=dict(type="path", required=True),
            trees=dict(type="list", elements="dict", required=True, options=dict(
                name=dict(type="str", required=True),
                products=dict(type="list", elements="str", default=[]),
                make_args=dict(type="list", elements="str", default=[]),
            )),
        ),
        supports_check_mode=True,
    )
    dest = module.params["dest"]
    trees = module.params["trees"]
    kernel = os.uname().release
    if not module.params["archive_b64"]:
        module.fail_json(msg="no sources received: thrashlab_build's action plugin (the role's "
                             "action_plugins/) must pack them")
    try:
        archive = base64.b64decode(module.params["archive_b64"], validate=True)
        digests = tree_digests(archive, [t["name"] for t in trees], kernel,
                               {t["name"]: t["make_args"] for t in trees})
    except (ValueError, tarfile.TarError) as e:
        module.fail_json(msg="the sources sent by the controller are not a tar: %s" % e)

    built, output = [], {}
    for tree in trees:
        name = tree["name"]
        target = os.path.join(dest, name)
        stamp = os.path.join(target, STAMP)
        try:
            with open(stamp) as f:
                recorded = f.read().strip()
        except FileNotFoundError:
            recorded = ""
        products_there = all(os.path.exists(os.path.join(target, p)) for p in tree["products"])
        if recorded == digests[name] and products_there:
            continue
        built.append(name)
        if module.check_mode:
            continue
        shutil.rmtree(target, ignore_errors=True)
        os.makedirs(target)
        try:
            unpack(archive, name, target)
        except (OSError, ValueError, tarfile.TarError) as e:
            module.fail_json(msg="cannot unpack %s into %s: %s" % (name, target, e), built=built)
        if not os.listdir(target):
            module.fail_json(msg="the sources have no directory %s/" % name, built=built)
        argv = ["make", "-C", target] + tree["make_args"]
        rc, out, err = module.run_command(argv)
        output[name] = (out + err)[-4000:]
        if rc != 0:
            module.fail_json(msg="building %s failed: %s exited with %d" % (name, " ".join(argv), rc),
                             built=built, output=output, stdout=out, stderr=err)
        missing = [p for p in tree["products"] if not os.path.exists(os.path.join(target, p))]
        if missing:
            module.fail_json(msg="building %s left no %s" % (name, ", ".join(missing)), built=built, output=output)
        with open(stamp, "w") as f:
            f.write(digests[name] + "\n")

    module.exit_json(changed=bool(built), built=built, digests=digests, output=output)


if __name__ == "__main__":
    main()
