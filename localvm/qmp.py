"""A few QMP commands on a VM's monitor socket (-qmp unix:...,server=on,wait=off).

QMP speaks one JSON object per line: a greeting, then for each command its
answer ({"return": ...} or {"error": ...}), with asynchronous events
({"event": ...}) possibly in between, which are skipped here.
"""
from __future__ import annotations

import json
import socket
from pathlib import Path


class QMPError(RuntimeError):
    pass


def qmp_commands(sock_path: Path, commands: list[str], timeout: float = 5.0) -> list:
    """Run ``commands`` (names without arguments) in one session, after the
    capabilities negotiation; their "return" values, in order."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock_path))
        reader = s.makefile("r", encoding="utf-8")

        def answer() -> dict:
            while True:
                line = reader.readline()
                if not line:
                    raise QMPError(f"{sock_path}: QEMU closed the monitor")
                msg = json.loads(line)
                if "event" not in msg:
                    return msg

        answer()  # the greeting
        results = []
        for name in ["qmp_capabilities", *commands]:
            s.sendall(json.dumps({"execute": name}).encode() + b"\n")
            msg = answer()
            if "error" in msg:
                raise QMPError(f"{sock_path}: {name}: {msg['error'].get('desc', msg['error'])}")
            results.append(msg.get("return"))
        return results[1:]


def vcpu_threads(sock_path: Path) -> list[int]:
    """The host thread id of each vCPU, by vCPU index."""
    (cpus,) = qmp_commands(sock_path, ["query-cpus-fast"])
    return [c["thread-id"] for c in sorted(cpus, key=lambda c: c["cpu-index"])]


def quit_vm(sock_path: Path) -> None:
    """Ask QEMU to quit (it then removes its pidfile); no error if it is already gone."""
    try:
        qmp_commands(sock_path, ["quit"], timeout=3)
    except (OSError, ValueError, QMPError):
        pass
