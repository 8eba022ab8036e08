"""``manage.py runhub`` with uvicorn speaking WebSocket through another protocol, to compare protocols in one run.

    .venv/bin/python bench/runhub_ws.py WS runhub [runhub's arguments]

WS is any value of uvicorn's ``--ws`` (``websockets-sansio``, ``websockets``, ``wsproto``, ``module:Class``);
it replaces ``runhub.UVICORN_WS`` in this process before ``runhub`` builds its server's command line.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    import django

    django.setup()
    from django.core.management import execute_from_command_line

    from hub.management.commands import runhub

    runhub.UVICORN_WS = sys.argv[1]
    execute_from_command_line([sys.argv[0], *sys.argv[2:]])


if __name__ == "__main__":
    main()
