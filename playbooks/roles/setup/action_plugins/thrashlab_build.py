# Action plugin of thrashlab_build: packs the source trees on the controller
# into a reproducible tar, in memory, and hands it to the module of the same
# name on the machine as an argument. The sources thus travel in the same
# SSH round trip as the build check: with pipelining, one round trip per
# machine when nothing changed (a copy task would cost two: stat, then file).
from __future__ import annotations

import base64
import fnmatch
import io
import os
import stat
import tarfile

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase


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
        rel_dir = tree + "/" + ("" if rel_dir == "." else rel_dir + "/")
        dirnames[:] = sorted(d for d in dirnames if not excluded(rel_dir + d, d, patterns))
        for name in filenames:
            full = os.path.join(dirpath, name)
            if excluded(rel_dir + name, name, patterns) or not os.path.isfile(full):
                continue
            found.append((rel_dir + name, full))
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


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("src", "trees", "exclude", "dest"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        src = args.get("src")
        trees = args.get("trees")
        if not src or not isinstance(trees, list) or not trees:
            raise AnsibleActionFail("thrashlab_build needs src (a directory on the controller) and trees (a list)")
        src = os.path.expanduser(str(src))
        exclude = [str(p) for p in args.get("exclude") or []]
        members = []
        for tree in trees:
            name = tree.get("name") if isinstance(tree, dict) else None
            if not name:
                raise AnsibleActionFail("each item of trees needs a name: %r" % (tree,))
            if not os.path.isdir(os.path.join(src, name)):
                raise AnsibleActionFail("source directory %s does not exist" % os.path.join(src, name))
            files = collect(src, name, exclude)
            if not files:
                raise AnsibleActionFail("source directory %s has no files to copy" % os.path.join(src, name))
            members.extend(files)
        archive = build_tar(members)

        module_args = {
            "archive_b64": base64.b64encode(archive).decode("ascii"),
            "trees": trees,
            "dest": args.get("dest"),
        }
        result.update(self._execute_module(module_name="thrashlab_build", module_args=module_args,
                                           task_vars=task_vars))
        result["files"] = [arcname for arcname, _ in members]
        return result
