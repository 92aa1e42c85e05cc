#!/usr/bin/python3
# Packs source trees into one reproducible tar on the controller, so that a
# single file transfer (and a single checksum) carries all of them to a VM.
from __future__ import annotations

DOCUMENTATION = r"""
module: thrashlab_pack
short_description: Pack source directories into a reproducible tar (run on the controller)
description:
  - Writes the files of O(trees) (directories under O(src)) into the tar O(dest), in a
    reproducible form (sorted names, no time stamps, owner root, mode 0644 or 0755), leaving
    out files that match O(exclude). The same sources always give the same bytes.
  - O(dest) is rewritten only when its content changes; the task is changed only then.
  - Meant for C(delegate_to: localhost). Supports check mode.
options:
  src:
    description: Directory that holds the trees.
    type: path
    required: true
  trees:
    description: Directories under O(src) to pack; each becomes a top-level directory of the tar.
    type: list
    elements: str
    required: true
  dest:
    description: The tar file to write; its directory is created if needed.
    type: path
    required: true
  exclude:
    description:
      - Shell patterns of files and directories to leave out (build products, editor files).
        A pattern without C(/) is matched against each name, one with C(/) against the path
        relative to its tree.
    type: list
    elements: str
    default: []
"""

RETURN = r"""
path:
  description: The tar file.
  type: str
  returned: always
sha256:
  description: Checksum of the tar.
  type: str
  returned: always
files:
  description: The files packed, as paths inside the tar.
  type: list
  elements: str
  returned: always
"""

import fnmatch
import hashlib
import io
import os
import stat
import tarfile

from ansible.module_utils.basic import AnsibleModule


def excluded(relpath, name, patterns):
    for pat in patterns:
        target = relpath if "/" in pat else name
        if fnmatch.fnmatchcase(target, pat):
            return True
    return False


def collect(src, tree, patterns):
    """(path in tar, absolute path) of every regular file of the tree, sorted."""
    root = os.path.join(src, tree)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(d for d in dirnames if not excluded(rel_dir + d, d, patterns))
        for name in filenames:
            full = os.path.join(dirpath, name)
            if excluded(rel_dir + name, name, patterns) or not os.path.isfile(full):
                continue
            found.append((tree + "/" + rel_dir + name, full))
    return sorted(found)


def build_tar(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for arcname, full in members:
            with open(full, "rb") as f:
                data = f.read()
            info = tarfile.TarInfo(arcname)
            info.size = len(data)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = 0o755 if os.stat(full).st_mode & stat.S_IXUSR else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type="path", required=True),
            trees=dict(type="list", elements="str", required=True),
            dest=dict(type="path", required=True),
            exclude=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    src, dest = module.params["src"], module.params["dest"]
    members = []
    for tree in module.params["trees"]:
        if not os.path.isdir(os.path.join(src, tree)):
            module.fail_json(msg="source directory %s does not exist" % os.path.join(src, tree))
        files = collect(src, tree, module.params["exclude"])
        if not files:
            module.fail_json(msg="source directory %s has no files to copy" % os.path.join(src, tree))
        members.extend(files)
    data = build_tar(members)

    try:
        with open(dest, "rb") as f:
            changed = f.read() != data
    except FileNotFoundError:
        changed = True
    if changed and not module.check_mode:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        tmp = "%s.%d.tmp" % (dest, os.getpid())
        with open(tmp, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    module.exit_json(changed=changed, path=dest, sha256=hashlib.sha256(data).hexdigest(),
                     files=[arcname for arcname, _ in members])


if __name__ == "__main__":
    main()
