#!/usr/bin/env python
"""Django's command-line utility for Ling Hub."""

import os
import sys


def main() -> None:
    # Files and directories every command creates (the database, the secret key, the data directory) are the
    # hub's user's alone: 0600 and 0700 (foundation.private_files.PRIVATE_UMASK).
    os.umask(0o077)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
