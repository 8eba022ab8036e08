"""The ``linghub`` command: send, online, queue, inbox, ack, tail, members, mcp — the library, from a shell.

The hub URL and the member token come from ``--url`` / ``--token-file`` or ``LINGHUB_URL`` / ``LINGHUB_TOKEN``
(``--token`` still works, with a warning: a token on the command line is visible in ``ps``). ``--member`` /
``LINGHUB_MEMBER`` names the member where a command needs it. Output is for people; ``--json`` prints JSON for
scripts (``tail --json``: one object per line).

Exit status: 0 done; 1 the hub said no (rejected message, refused delivery, a named member offline, the
backend held by another connection); 2 bad usage; 3 the hub could not be reached; 4 the token was refused.
"""

from __future__ import annotations

from linghub.cli.parser import build_parser, main

__all__ = ["build_parser", "main"]
