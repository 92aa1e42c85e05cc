"""One machine over SSH (fabric): commands and SFTP downloads, host keys verified.

The connection is a ``fabric.Connection``: host, port, user, key and proxy as
the inventory gives them (collector/inventory.py), and where it says nothing,
as ``~/.ssh/config`` (and ``/etc/ssh/ssh_config``) say for that host, which
fabric's ``Config`` loads: ``HostName``, ``Port``, ``User``, ``IdentityFile``,
``ProxyJump``, ``ProxyCommand``, ``ConnectTimeout``. A ProxyJump of the
inventory is a chain of jump-host Connections; every jump host (of the
inventory or of ssh_config) logs in as its own ssh_config says (User,
IdentityFile; ssh-agent and ~/.ssh/id_* too) and may also use the
inventory's key. A ProxyCommand runs locally as the socket.

Host keys are checked against the known_hosts file(s) of the inventory with
paramiko's RejectPolicy, for the machine and for every jump host (fabric's
default, AutoAddPolicy, is replaced before anything connects): a key that is
not there, or differs, is refused (never added). Transient failures
(connection refused or reset, timeouts, a dropped session) raise
``Transient``; the caller retries with backoff. A refused host key or a
refused login raise ``Permanent``.
"""
from __future__ import annotations

import hashlib
import math
import os
import shlex
import socket
import time

import fabric
import invoke
import paramiko

from .inventory import Host


class Transient(Exception):
    """Worth another attempt (after a pause)."""


class Permanent(Exception):
    """Another attempt would fail the same way."""


class ChecksumMismatch(Exception):
    def __init__(self, path: str, expected: str, got: str):
        super().__init__(f"{path}: checksum mismatch: listed {expected}, downloaded {got}")
        self.path, self.expected, self.got = path, expected, got


def ssh_config(timeout: float) -> fabric.Config:
    """fabric's settings, shared by every connection: the system's and the user's
    ssh_config loaded once, and the connect timeout (for jump hosts of ssh_config too)."""
    return fabric.Config(overrides={"timeouts": {"connect": math.ceil(timeout)}})


def describe(conn: fabric.Connection) -> str:
    return f"{conn.user}@{conn.host}:{conn.port}"


def _chain(conn: fabric.Connection) -> list[fabric.Connection]:
    """The machine's Connection, then each jump host's behind it (a ProxyCommand
    gateway is a string: no host key of ours to pin there)."""
    chain = []
    while isinstance(conn, fabric.Connection):
        chain.append(conn)
        conn = conn.gateway
    return chain


def _classify(e: BaseException, host: Host, who: str) -> Exception:
    if isinstance(e, (Transient, Permanent)):
        return e
    pinned = ", ".join(host.known_hosts)
    if isinstance(e, paramiko.BadHostKeyException):
        return Permanent(f"host key of {who} does not match the one pinned in {pinned}: refusing to connect ({e})")
    if isinstance(e, paramiko.AuthenticationException):
        return Permanent(f"login refused as {who} (key {host.key_file or 'from ssh-agent/~/.ssh'}): {e}")
    if isinstance(e, paramiko.SSHException) and "not found in known_hosts" in str(e):
        return Permanent(f"host key of {who} is not in {pinned}: refusing to connect (start the testbed again, "
                         "or pin the key: see docs/cases.md)")
    if isinstance(e, (paramiko.SSHException, invoke.exceptions.CommandTimedOut, invoke.exceptions.ThreadException,
                      socket.timeout, TimeoutError, EOFError, ConnectionError, OSError)):
        text = str(e) or type(e).__name__
        return Transient(f"{type(e).__name__}: {text}")
    return Permanent(f"{type(e).__name__}: {e}")


class _HashingWriter:
    """A file that also takes the sha256 and the size of what is written to it."""

    def __init__(self, file):
        self.file = file
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.sha256.update(data)
        self.size += len(data)
        self.file.write(data)


class Remote:
    def __init__(self, host: Host, timeout: float, config: fabric.Config):
        """``config``: ssh_config(timeout). Resolves the connection (ssh_config
        included) without connecting; ValueError for an unusable setting."""
        self.host = host
        self.timeout = timeout
        auth = {"banner_timeout": timeout, "auth_timeout": timeout}
        if host.key_file:
            auth.update(key_filename=[host.key_file], look_for_keys=False, allow_agent=False)
        if host.proxy_jump == "none" or host.proxy_command == "none":
            gateway = False  # fabric: no proxy, whatever ssh_config says
        elif host.proxy_jump:
            # Built here, not handed to fabric as ssh_config: fabric takes a hop with the
            # machine's own address (a bastion forwarding a port to itself) for a loop
            # and drops it. As in OpenSSH, each hop is reached through the one before
            # it, the first one as its own ssh_config says.
            gateway = None
            for hop in host.proxy_jump.split(","):
                gateway = fabric.Connection(hop, config=config, gateway=gateway,
                                            connect_kwargs={"banner_timeout": timeout, "auth_timeout": timeout})
        else:
            gateway = host.proxy_command  # None: ssh_config's ProxyJump/ProxyCommand, if any
        self.conn = fabric.Connection(host.address, user=host.user, port=host.port, config=config,
                                      gateway=gateway, connect_kwargs=auth)
        for conn in _chain(self.conn):
            conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
            if conn is not self.conn and host.key_file:
                # a jump host logs in as its ssh_config says, and may use the inventory's key too
                keys = conn.connect_kwargs.setdefault("key_filename", [])
                keys.append(host.key_file)

    def describe(self) -> str:
        return describe(self.conn)

    # -------------------------------------------------------------- connection
    def connect(self) -> None:
        """Open the connection (the jump hosts first) unless it is open."""
        if self.conn.is_connected:
            return
        if self.host.backend == "none":
            raise Permanent("no testbed is up for this machine (the inventory has no connection settings): "
                            "start one with `python -m localvm up` or `vagrant up`")
        known = [path for path in self.host.known_hosts if os.path.exists(path)]
        if not known:
            raise Permanent(f"no known_hosts file for {self.host.name} (looked for "
                            f"{', '.join(self.host.known_hosts)}): cannot verify its host key")
        key = self.host.key_file
        if key and not os.path.exists(key):
            raise Permanent(f"private key {key} of {self.host.name} does not exist")
        self.close()
        chain = _chain(self.conn)
        for conn in reversed(chain):
            for path in known:
                conn.client.load_host_keys(path)
            who = describe(conn) if conn is self.conn else f"jump host {describe(conn)}"
            try:
                conn.open()
            except BaseException as e:
                self.close()
                error = _classify(e, self.host, who)
                if isinstance(error, Transient):  # say which hop did not answer
                    error = Transient(f"{who}: {error}")
                raise error from e
        self.conn.transport.set_keepalive(10)

    def close(self) -> None:
        for conn in _chain(self.conn):
            conn.close()

    def _fail(self, e: BaseException) -> Exception:
        self.close()
        return _classify(e, self.host, self.describe())

    # -------------------------------------------------------------- commands
    def run(self, command: str, timeout: float | None = None) -> tuple[int, str, str]:
        self.connect()
        try:
            result = self.conn.run(command, hide=True, warn=True, in_stream=False,
                                   timeout=timeout or self.timeout * 4)
        except BaseException as e:
            raise self._fail(e) from e
        return result.exited, result.stdout, result.stderr

    # -------------------------------------------------------------- files
    def download(self, remote_path: str, local_path: str, expected_sha256: str) -> int:
        """Copy ``remote_path`` to ``local_path`` (written as ``local_path``.part and
        renamed only when its sha256 is ``expected_sha256``); returns its size."""
        self.connect()
        part = local_path + ".part"
        os.makedirs(os.path.dirname(local_path), exist_ok=True)
        try:
            sftp = self.conn.sftp()
            sftp.get_channel().settimeout(self.timeout)  # a machine gone silent fails the read
            with open(part, "wb") as dst:
                sink = _HashingWriter(dst)
                sftp.getfo(remote_path, sink)
                dst.flush()
                os.fsync(dst.fileno())
        except FileNotFoundError as e:
            _unlink(part)
            raise Transient(f"{remote_path} vanished on the machine ({e})") from e
        except BaseException as e:
            _unlink(part)
            raise self._fail(e) from e
        got = sink.sha256.hexdigest()
        if got != expected_sha256:
            _unlink(part)
            raise ChecksumMismatch(remote_path, expected_sha256, got)
        os.replace(part, local_path)
        return sink.size


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
