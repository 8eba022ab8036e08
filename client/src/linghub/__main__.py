"""``python -m linghub`` is the ``linghub`` command."""

from __future__ import annotations

import sys

from linghub.cli import main

sys.exit(main())
