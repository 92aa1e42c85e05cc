"""Files: read without failing, write atomically (a temporary name, fsync,
rename), and put a run's finished directory in place, so that an interrupted
step never leaves anything that looks complete."""
from __future__ import annotations

import json
import os
import shutil
import time


def read_text(path: str, default: str | None = None) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def atomic_write(path: str, data: str | bytes, mode: int = 0o644) -> None:
    """Write ``path`` so that it either does not exist or is complete: a temporary
    name in the same directory, fsync, rename."""
    d = os.path.dirname(path) or "."
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, ".%s.tmp-%d" % (os.path.basename(path), os.getpid()))
    b = data.encode() if isinstance(data, str) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_json(path: str, obj, indent: int | None = 1) -> None:
    atomic_write(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_tree(path: str) -> None:
    """Remove a directory: first renamed to a hidden name, so that it vanishes at once."""
    if not os.path.lexists(path):
        return
    parent, base = os.path.split(path.rstrip("/"))
    trash = os.path.join(parent, ".%s.old-%d-%d" % (base, os.getpid(), time.monotonic_ns()))
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def tail(path: str, limit: int = 1500) -> str:
    text = read_text(path, "") or ""
    return text[-limit:]


def commit_dir(tmp: str, final: str) -> None:
    """Rename the finished hidden directory into place (replacing an older one)."""
    if os.path.lexists(final):
        remove_tree(final)
    os.rename(tmp, final)
    fsync_dir(os.path.dirname(final))


def fresh_tmp_dir(final: str) -> str:
    parent, base = os.path.split(final)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, ".%s.partial" % base)
    if os.path.lexists(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    return tmp
