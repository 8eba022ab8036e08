"""Settings for bench/route.py's hub: the real hub plus one bare baseline view."""

from hub.settings import *  # noqa: F403

ROOT_URLCONF = "bench.route_urls"
