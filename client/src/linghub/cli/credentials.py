"""Where the ``linghub`` command takes the member token from: ``$LINGHUB_TOKEN`` or ``--token-file`` keep it out of
the process list; ``--token`` on the command line shows it to every user of the machine (``ps``, /proc) and is
only kept for old scripts, with a warning."""

from __future__ import annotations

import argparse
import stat
from pathlib import Path

from linghub.cli.exits import EXIT_USAGE, Failure
from linghub.cli.output import note

TOKEN_OPTION_WARNING = (
    "linghub: warning: --token shows the token to every user of this machine (ps, /proc); "
    "set LINGHUB_TOKEN or use --token-file instead (--token is deprecated)"
)


def read_token_file(path: str) -> str:
    """The token in the file ``path`` (its first line, without surrounding white space)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
        mode = file.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise Failure(f"--token-file {path}: cannot read it ({exc})", EXIT_USAGE) from None
    lines = text.strip().splitlines()
    if not lines or not lines[0].strip():
        raise Failure(f"--token-file {path}: the file is empty", EXIT_USAGE)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        note(f"linghub: warning: --token-file {path} can be read by other users (chmod 600 {path})")
    return lines[0].strip()


def command_line_token(args: argparse.Namespace) -> str | None:
    """The token the options give (None: the library reads ``$LINGHUB_TOKEN``)."""
    token: str | None = getattr(args, "token", None)
    token_file: str | None = getattr(args, "token_file", None)
    if token is not None and token_file is not None:
        raise Failure("give the token once: --token or --token-file", EXIT_USAGE)
    if token_file is not None:
        return read_token_file(token_file)
    if token is not None:
        note(TOKEN_OPTION_WARNING)
    return token
