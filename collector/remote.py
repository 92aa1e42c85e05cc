"""One machine over SSH (paramiko): commands and SFTP downloads, host key verified.

Host keys are checked against the known_hosts file(s) of the inventory with
paramiko's RejectPolicy: a machine whose key is not there, or differs, is
refused (never added). Transient failures (connection refused or reset,
timeouts, a dropped session) raise ``Transient``; the caller retries with
backoff. A refused host key or a refused login raise ``Permanent``.
"""
from __future__ import annotations

import hashlib
import os
import shlex
import socket
import time

import paramiko

from .inventory import Host

CHUNK = 64 * 1024


class Transient(Exception):
    """Worth another attempt (after a pause)."""


class Permanent(Exception):
    """Another attempt would fail the same way."""


class ChecksumMismatch(Exception):
    def __init__(self, path: str, expected: str, got: str):
        super().__init__(f"{path}: checksum mismatch: listed {expected}, downloaded {got}")
        self.path, self.expected, self.got = path, expected, got


def _classify(e: BaseException, host: Host) -> Exception:
    if isinstance(e, (Transient, Permanent)):
        return e
    if isinstance(e, paramiko.BadHostKeyException):
        return Permanent(f"host key of {host.describe()} does not match the one pinned in "
                         f"{', '.join(host.known_hosts)}: refusing to connect ({e})")
    if isinstance(e, paramiko.AuthenticationException):
        return Permanent(f"login refused as {host.user} on {host.address}:{host.port} "
                         f"(key {host.key_file or 'from ssh-agent/~/.ssh'}): {e}")
    if isinstance(e, paramiko.SSHException) and "not found in known_hosts" in str(e):
        return Permanent(f"host key of {host.describe()} is not in {', '.join(host.known_hosts)}: refusing "
                         "to connect (start the testbed again, or pin the key: see docs/cases.md)")
    if isinstance(e, (paramiko.SSHException, socket.timeout, TimeoutError, EOFError, ConnectionError, OSError)):
        text = str(e) or type(e).__name__
        return Transient(f"{type(e).__name__}: {text}")
    return Permanent(f"{type(e).__name__}: {e}")


class Remote:
    def __init__(self, host: Host, timeout: float = 30.0):
        self.host = host
        self.timeout = timeout
        self.client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None

    # -------------------------------------------------------------- connection
    def connect(self) -> None:
        self.close()
        if self.host.backend == "none":
            raise Permanent("no testbed is up for this machine (the inventory has no connection settings): "
                            "start one with `python -m localvm up` or `vagrant up`")
        client = paramiko.SSHClient()
        loaded = 0
        for path in self.host.known_hosts:
            if os.path.exists(path):
                client.load_host_keys(path)
                loaded += 1
        if not loaded:
            raise Permanent(f"no known_hosts file for {self.host.name} (looked for "
                            f"{', '.join(self.host.known_hosts)}): cannot verify its host key")
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        key = self.host.key_file
        if key and not os.path.exists(key):
            raise Permanent(f"private key {key} of {self.host.name} does not exist")
        try:
            client.connect(self.host.address, port=self.host.port, username=self.host.user,
                           key_filename=key, look_for_keys=key is None, allow_agent=key is None,
                           timeout=self.timeout, banner_timeout=self.timeout, auth_timeout=self.timeout)
            transport = client.get_transport()
            if transport is not None:
                transport.set_keepalive(10)
        except BaseException as e:
            client.close()
            raise _classify(e, self.host) from e
        self.client = client

    def close(self) -> None:
        for obj in (self._sftp, self.client):
            try:
                if obj is not None:
                    obj.close()
            except Exception:
                pass
        self._sftp = None
        self.client = None

    def _ensure(self) -> paramiko.SSHClient:
        if self.client is None or not self.client.get_transport() or not self.client.get_transport().is_active():
            self.connect()
        return self.client

    # -------------------------------------------------------------- commands
    def run(self, command: str, timeout: float | None = None) -> tuple[int, str, str]:
        client = self._ensure()
        try:
            _, stdout, stderr = client.exec_command(command, timeout=timeout or self.timeout * 4)
            out = stdout.read().decode(errors="replace")
            err = stderr.read().decode(errors="replace")
            rc = stdout.channel.recv_exit_status()
        except BaseException as e:
            self.close()
            raise _classify(e, self.host) from e
        return rc, out, err

    # -------------------------------------------------------------- files
    def sftp(self) -> paramiko.SFTPClient:
        client = self._ensure()
        if self._sftp is None:
            try:
                self._sftp = client.open_sftp()
                self._sftp.get_channel().settimeout(self.timeout)
            except BaseException as e:
                self.close()
                raise _classify(e, self.host) from e
        return self._sftp

    def download(self, remote_path: str, local_path: str, expected_sha256: str) -> int:
        """Copy ``remote_path`` to ``local_path`` (written as ``local_path``.part and
        renamed only when its sha256 is ``expected_sha256``); returns its size."""
        part = local_path + ".part"
        os.makedirs(os.path.dirname(local_path), exist_ok=True)
        h = hashlib.sha256()
        size = 0
        try:
            sftp = self.sftp()
            with sftp.open(remote_path, "rb") as src, open(part, "wb") as dst:
                src.prefetch()
                while True:
                    chunk = src.read(CHUNK)
                    if not chunk:
                        break
                    h.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
                dst.flush()
                os.fsync(dst.fileno())
        except FileNotFoundError as e:
            _unlink(part)
            raise Transient(f"{remote_path} vanished on the machine ({e})") from e
        except BaseException as e:
            _unlink(part)
            self.close()
            raise _classify(e, self.host) from e
        got = h.hexdigest()
        if got != expected_sha256:
            _unlink(part)
            raise ChecksumMismatch(remote_path, expected_sha256, got)
        os.replace(part, local_path)
        return size


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def listing_command(run_dir: str) -> str:
    """Every regular file of the run with its sha256, hidden names (the runner's
    unfinished runs and temporary files) left out. 'THRASHLAB-NO-RUN' when the run
    directory does not exist."""
    q = shlex.quote(run_dir)
    return (f"if [ ! -d {q} ]; then echo THRASHLAB-NO-RUN; exit 0; fi; cd {q} && "
            "find . -type f ! -path '*/.*' -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum --")


def parse_listing(text: str) -> dict[str, str] | None:
    """``sha256sum`` output -> {relative path: sha256}; None for THRASHLAB-NO-RUN."""
    if text.strip() == "THRASHLAB-NO-RUN":
        return None
    files: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("\\"):
            raise Permanent(f"a file name the collector cannot handle (escaped by sha256sum): {line!r}")
        digest, sep, path = line.partition("  ")
        if not sep or len(digest) != 64:
            raise Transient(f"unexpected listing line {line!r}")
        if path.startswith("./"):
            path = path[2:]
        files[path] = digest.lower()
    return files


def backoff(attempt: int, base: float = 1.0, cap: float = 8.0) -> float:
    """Pause before attempt ``attempt`` + 1 (attempt counts from 1): 1, 2, 4, 8, 8, ... s."""
    return min(cap, base * (2 ** (attempt - 1)))


def sleep(seconds: float) -> None:
    time.sleep(seconds)
