"""Ling Hub settings: one module, every value from the environment, junk refused at start-up.

SQLite (WAL) is the default database; ``DATABASE_URL`` switches to PostgreSQL. ``REDIS_URL`` switches the
channel layer, the cache and the django-q2 broker to Redis; ``runhub`` sets it to an embedded server.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import dj_database_url
from environs import EnvError

from foundation import environment
from foundation.private_files import create_private_once, private_directory

BASE_DIR = environment.BASE_DIR

# Every environment variable, read and checked in one place (foundation/environment.py, docs/configuration.md); each is
# also the Django setting of the same name. The settings below are derived from them.
_env = environment.read()
globals().update(_env)

# The data directory (database, secret key, the running hub's Redis credentials, metrics files): 0700, its files
# 0600 (foundation.private_files).
DATA_DIR = private_directory(_env.HUB_DATA_DIR)


def _persistent_secret_key() -> str:
    """A random key kept in the data directory (0600 from its creation), so sessions survive restarts of the
    embedded default."""
    return create_private_once(DATA_DIR / "secret_key", secrets.token_urlsafe(50)).strip()


SECRET_KEY = _env.HUB_SECRET_KEY or _persistent_secret_key()
DEBUG = _env.HUB_DEBUG
ALLOWED_HOSTS = _env.HUB_ALLOWED_HOSTS
CSRF_TRUSTED_ORIGINS = _env.HUB_CSRF_TRUSTED_ORIGINS

INSTALLED_APPS = [
    # daphne's app gives `manage.py runserver` its WebSocket support, and importing it loads Twisted and installs
    # its reactor (about 15 MiB in every process of the hub), so only runserver loads it; runhub starts daphne
    # (`--server daphne`) through daphne's own command line, which needs no app.
    *(["daphne"] if sys.argv[1:2] == ["runserver"] else []),
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "channels",
    "django_q",
    "hub",
    "delivery",
    "members",
    "offline_queue",
    "feishu",
    "feishu.coordination",
    "hub.dashboard",
    "hub.lingmessage",
    "hub.checks.ChecksConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # A NUL in the URL is a 400 before any lookup (PostgreSQL cannot compare text holding one: a 500 otherwise).
    "hub.middleware.refuse_nul",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes wants: turns a locked-out login into its 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "hub.urls"
ASGI_APPLICATION = "hub.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------------------
DATABASE_URL = _env.DATABASE_URL or f"sqlite:///{DATA_DIR / 'hub.sqlite3'}"
_db = dj_database_url.parse(DATABASE_URL)
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # Django's SQLite backend with a pool of open connections per process (foundation/sqlite/base.py).
    _db["ENGINE"] = "foundation.sqlite"
    _db["OPTIONS"] = {
        # WAL lets readers run beside the writer; IMMEDIATE takes the write lock at BEGIN, so two
        # processes wait on the busy timeout instead of failing with "database is locked" mid-transaction.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    # The test database is a file too (not Django's shared-cache in-memory default, whose table locks fail at
    # once between threads instead of waiting on the busy timeout), one per test run.
    _db.setdefault("TEST", {})["NAME"] = str(Path(tempfile.gettempdir()) / f"linghub-test-{os.getpid()}.sqlite3")
else:
    _db.setdefault("TEST", {})["NAME"] = _env.HUB_TEST_DB_NAME
# Connections are closed at the end of every request and ``database_sync_to_async`` call: under ASGI each request
# runs in a thread of its own, so a connection kept by its thread would be used by nobody again (Django's advice:
# disable persistent connections). On SQLite "closing" gives the connection back to the process's pool
# (foundation/sqlite/base.py), still open, for the next request; PostgreSQL closes it (and the system check hub.W004
# warns if it is set to persist anyway).
_db["CONN_MAX_AGE"] = _env.HUB_DB_CONN_MAX_AGE
_db["CONN_HEALTH_CHECKS"] = True
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer, cache, django-q2 broker -------------------------------------------------------
REDIS_URL = _env.REDIS_URL
REDIS_PREFIX = _env.HUB_REDIS_PREFIX
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # A Redis pub/sub layer (as channels_redis's pub/sub layer, about 2x cheaper than its list-based one
            # for this traffic) on channels' public layer interface, with publishes sent in batches
            # (foundation/channel_layer.py; see docs/performance.md). Delivery that must not be lost is backed by
            # database rows and acks.
            "BACKEND": "foundation.channel_layer.BatchingPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": REDIS_PREFIX},
        }
    }
    CACHES = {
        "default": {
            # Django's Redis cache with one connection pool per process, not per request (foundation/cache.py).
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": REDIS_PREFIX,
            # Values stored as JSON, never pickled: what a cache key holds is never run as code when read; one
            # connection pool per process (foundation.cache).
            "OPTIONS": {
                "serializer": "foundation.cache.JSONSerializer",
                "pool_class": "foundation.cache.SharedConnectionPool",
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

Q_CLUSTER = {
    "name": REDIS_PREFIX,
    # Worker processes. One is enough for the cluster's work (schedules every 30 s, flushes on reconnects,
    # follow-ups after acks, alerts: short tasks; the deliveries run on retry_queue's threads) and keeps an idle
    # hub small (docs/performance.md, "Footprint"); the sentinel replaces a dead one.
    "workers": _env.HUB_Q_WORKERS,
    # A worker is replaced by a fresh one after that many tasks, or once it holds more than max_rss KiB, so a
    # long-running hub does not grow.
    "recycle": 500,
    "max_rss": 256 * 1024,
    # A task may run at most `timeout` seconds and is handed out again after `retry` seconds:
    # retry > timeout so a slow task is never run twice at once.
    "timeout": 60,
    "retry": 120,
    "max_attempts": 5,
    "save_limit": 500,
    "catch_up": False,
    "label": "Background tasks",
    "sync": _env.HUB_Q_SYNC,
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- Static files, auth, i18n ----------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
# WhiteNoise serves the admin's and dashboards' static files from daphne itself, straight from the apps
# (no collectstatic step for the embedded default).
WHITENOISE_USE_FINDERS = True
# Files WhiteNoise serves at the site's root rather than under STATIC_URL: /favicon.ico, which browsers ask for
# on every page (the admin's too).
WHITENOISE_ROOT = BASE_DIR / "static" / "root"
LOGIN_URL = "admin:login"
# Messages live in the session (server side): the admin shows a new member token once as a message, and the
# default cookie storage would send that token back and forth in a cookie.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# --- Admin login throttling (django-axes) -----------------------------------------------------------------
# HUB_LOGIN_FAILURE_LIMIT wrong passwords for one user name from one address lock that pair out of the login
# for HUB_LOGIN_LOCKOUT_MINUTES (429, even with the right password); a successful login resets the count.
# `manage.py axes_reset` lifts every lockout at once. Failures are kept in the database, shared by every process.
AUTHENTICATION_BACKENDS = [
    "members.login.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = _env.HUB_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=_env.HUB_LOGIN_LOCKOUT_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The address is REMOTE_ADDR (django-ipware is not installed): behind a reverse proxy that is the proxy's, so the
# lockout is then per user name, and no client can dodge it with a forged X-Forwarded-For.

# --- Behind TLS (HUB_BEHIND_TLS) -------------------------------------------------------------------------
# The hub is reached over https:// (its own HUB_SSL_CERT, or a reverse proxy that terminates TLS and sets
# X-Forwarded-Proto): cookies only over TLS, HSTS, plain-HTTP requests redirected (except /healthz,
# /health and /metrics, which monitoring polls on the machine itself). `manage.py check --deploy` is clean in this mode.
if _env.HUB_BEHIND_TLS:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # Only a proxy the hub sits behind may say a request came over TLS; it must set (not pass on) this header.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = _env.HUB_SSL_REDIRECT
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^health$", r"^metrics$"]
    SECURE_HSTS_SECONDS = _env.HUB_HSTS_SECONDS
    SECURE_HSTS_INCLUDE_SUBDOMAINS = _env.HUB_HSTS_INCLUDE_SUBDOMAINS
    SECURE_HSTS_PRELOAD = _env.HUB_HSTS_PRELOAD
    SILENCED_SYSTEM_CHECKS = [
        # Preloading is a promise for the whole domain that only its owner can make (HUB_HSTS_PRELOAD).
        *([] if SECURE_HSTS_PRELOAD else ["security.W021"]),
        # HUB_SSL_REDIRECT=false is a deliberate choice (the proxy redirects already).
        *([] if SECURE_SSL_REDIRECT else ["security.W008"]),
    ]
LANGUAGE_CODE = "en-us"
TIME_ZONE = _env.HUB_TIME_ZONE
USE_I18N = True
USE_TZ = True

LOG_LEVEL = _env.HUB_LOG_LEVEL
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {
        "handlers": ["console"],
        "level": LOG_LEVEL,
    },
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        # One INFO line per outbound request is noise; deliveries are in the hub.audit log.
        "httpx": {"level": "WARNING"},
        # django-axes: its banner on every command and a line per login are noise; lockouts are WARNINGs.
        "axes": {"level": "WARNING"},
        # django-q2 says at INFO every task it enqueues and runs, schedules every 30 s included: shown only with
        # HUB_LOG_LEVEL=DEBUG; a failed task is an ERROR and always shown.
        "django-q": {"level": "INFO" if LOG_LEVEL == "DEBUG" else "WARNING"},
    },
}

# --- The hub ---------------------------------------------------------------------------------------------
# Every HUB_*, FEISHU_*, COORD_* and COLLISION_* variable is a setting of the same name (foundation/environment.py).
if bool(_env.HUB_SSL_CERT) != bool(_env.HUB_SSL_KEY):
    raise EnvError("Environment variables HUB_SSL_CERT and HUB_SSL_KEY must be set together")
