"""Ling Hub settings: one module, every value from the environment, junk refused at start-up.

SQLite (WAL) is the default database; ``DATABASE_URL`` switches to PostgreSQL. ``REDIS_URL`` switches the
channel layer, the cache and the django-q2 broker to Redis; ``runhub`` sets it to an embedded server.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from datetime import timedelta
from pathlib import Path

from environs import Env, EnvError
from marshmallow.validate import OneOf, Range

BASE_DIR = Path(__file__).resolve().parent.parent

env = Env()


def secret(name: str, default: str | None = None) -> str | None:
    """A secret from ``name`` or from the file named by ``<name>_FILE``; ``default`` otherwise."""
    value = env.str(name, None)
    if value:
        return value
    path = env.path(f"{name}_FILE", None)
    if path:
        return Path(path).read_text(encoding="utf-8").strip()
    return default


DATA_DIR = env.path("HUB_DATA_DIR", BASE_DIR / "var")
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _persistent_secret_key() -> str:
    """A random key kept in the data directory, so sessions survive restarts of the embedded default."""
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50), encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


SECRET_KEY = secret("HUB_SECRET_KEY") or _persistent_secret_key()
DEBUG = env.bool("HUB_DEBUG", False)
ALLOWED_HOSTS = env.list("HUB_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("HUB_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
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
DATABASE_URL = env.str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'hub.sqlite3'}")
if not DATABASE_URL.startswith(("sqlite://", "postgres://", "postgresql://")):
    raise EnvError(f'Environment variable "DATABASE_URL" invalid: {DATABASE_URL!r} is not sqlite:// or postgres://')
_db = env.dj_db_url("DATABASE_URL", DATABASE_URL)
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # Django's SQLite backend with a pool of open connections per process (hub/sqlite/base.py).
    _db["ENGINE"] = "hub.sqlite"
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
    _db.setdefault("TEST", {})["NAME"] = env.str("HUB_TEST_DB_NAME", None)
# Connections are closed at the end of every request and ``database_sync_to_async`` call: under ASGI each request
# runs in a thread of its own, so a connection kept by its thread would be used by nobody again (Django's advice:
# disable persistent connections). On SQLite "closing" gives the connection back to the process's pool
# (hub/sqlite/base.py), still open, for the next request; PostgreSQL closes it (and the system check hub.W004 warns
# if it is set to persist anyway).
_db["CONN_MAX_AGE"] = env.int("HUB_DB_CONN_MAX_AGE", 0, validate=Range(min=0))
_db["CONN_HEALTH_CHECKS"] = True
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer, cache, django-q2 broker -------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", "") or None
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise EnvError(f'Environment variable "REDIS_URL" invalid: {REDIS_URL!r} is not a redis:// URL')
REDIS_PREFIX = env.str("HUB_REDIS_PREFIX", "linghub")

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # channels_redis's pub/sub layer (about 2x cheaper than the list-based one for this traffic),
            # with publishes sent in batches (hub/channel_layer.py; see docs/performance.md). Delivery that
            # must not be lost is backed by database rows and acks.
            "BACKEND": "hub.channel_layer.BatchingPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": REDIS_PREFIX},
        }
    }
    CACHES = {
        "default": {
            # Django's Redis cache with one connection pool per process, not per request (hub/cache.py).
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": REDIS_PREFIX,
            "OPTIONS": {"pool_class": "hub.cache.SharedConnectionPool"},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

Q_CLUSTER = {
    "name": REDIS_PREFIX,
    "workers": env.int("HUB_Q_WORKERS", 2, validate=Range(min=1, max=64)),
    # A task may run at most `timeout` seconds and is handed out again after `retry` seconds:
    # retry > timeout so a slow task is never run twice at once.
    "timeout": 60,
    "retry": 120,
    "max_attempts": 5,
    "save_limit": 500,
    "catch_up": False,
    "label": "Background tasks",
    "sync": env.bool("HUB_Q_SYNC", False),
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
AXES_FAILURE_LIMIT = env.int("HUB_LOGIN_FAILURE_LIMIT", 5, validate=Range(min=1))
AXES_COOLOFF_TIME = timedelta(minutes=env.int("HUB_LOGIN_LOCKOUT_MINUTES", 15, validate=Range(min=1)))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The address is REMOTE_ADDR (django-ipware is not installed): behind a reverse proxy that is the proxy's, so the
# lockout is then per user name, and no client can dodge it with a forged X-Forwarded-For.

# --- Behind TLS (HUB_BEHIND_TLS) -------------------------------------------------------------------------
# The hub is reached over https:// (its own HUB_SSL_CERT, or a reverse proxy that terminates TLS and sets
# X-Forwarded-Proto): cookies only over TLS, HSTS, plain-HTTP requests redirected (except /healthz,
# /health and /metrics, which monitoring polls on the machine itself). `manage.py check --deploy` is clean in this mode.
HUB_BEHIND_TLS = env.bool("HUB_BEHIND_TLS", False)
if HUB_BEHIND_TLS:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # Only a proxy the hub sits behind may say a request came over TLS; it must set (not pass on) this header.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("HUB_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^health$", r"^metrics$"]
    SECURE_HSTS_SECONDS = env.int("HUB_HSTS_SECONDS", 365 * 24 * 3600, validate=Range(min=0))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("HUB_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env.bool("HUB_HSTS_PRELOAD", False)
    SILENCED_SYSTEM_CHECKS = [
        # Preloading is a promise for the whole domain that only its owner can make (HUB_HSTS_PRELOAD).
        *([] if SECURE_HSTS_PRELOAD else ["security.W021"]),
        # HUB_SSL_REDIRECT=false is a deliberate choice (the proxy redirects already).
        *([] if SECURE_SSL_REDIRECT else ["security.W008"]),
    ]
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("HUB_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {
        "handlers": ["console"],
        "level": env.str("HUB_LOG_LEVEL", "INFO", validate=OneOf(["DEBUG", "INFO", "WARNING", "ERROR"])),
    },
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        # One INFO line per outbound request is noise; deliveries are in the hub.audit log.
        "httpx": {"level": "WARNING"},
        # django-axes: its banner on every command and a line per login are noise; lockouts are WARNINGs.
        "axes": {"level": "WARNING"},
    },
}

# --- The hub ---------------------------------------------------------------------------------------------
HUB_HOST = env.str("HUB_HOST", "127.0.0.1")
HUB_PORT = env.int("HUB_PORT", 8765, validate=Range(min=1, max=65535))
# The ASGI server runhub starts (`--server` too): uvicorn measured about 1.5-2x daphne's bridge round trips
# (docs/performance.md); daphne stays supported (it also gives `runserver` its WebSocket support).
HUB_SERVER = env.str("HUB_SERVER", "uvicorn", validate=OneOf(["uvicorn", "daphne"]))
# TLS on the hub's port (`https://`, `wss://`) under runhub: a PEM certificate (chain) and its key, both or neither.
HUB_SSL_CERT = env.path("HUB_SSL_CERT", None)
HUB_SSL_KEY = env.path("HUB_SSL_KEY", None)
if bool(HUB_SSL_CERT) != bool(HUB_SSL_KEY):
    raise EnvError("Environment variables HUB_SSL_CERT and HUB_SSL_KEY must be set together")
HUB_ADMIN_PASSWORD = secret("HUB_ADMIN_PASSWORD")
HUB_METRICS_TOKEN = secret("HUB_METRICS_TOKEN")

# Bridge WebSocket
HUB_BRIDGE_MAX_FRAME_BYTES = env.int("HUB_BRIDGE_MAX_FRAME_BYTES", 1024 * 1024, validate=Range(min=1024))
HUB_BRIDGE_PENDING_TTL = env.int("HUB_BRIDGE_PENDING_TTL", 300, validate=Range(min=1))
HUB_BRIDGE_HEARTBEAT_TIMEOUT = env.int("HUB_BRIDGE_HEARTBEAT_TIMEOUT", 90, validate=Range(min=5))
HUB_BRIDGE_ACK_TIMEOUT = env.int("HUB_BRIDGE_ACK_TIMEOUT", 30, validate=Range(min=1))
# Token-less user clients (chat, switch_backend, list_backends) from loopback addresses, without an Origin or a
# proxy header: off; an operator turns it on for old user clients on this machine (README, "Bridge").
HUB_BRIDGE_LOOPBACK_USERS = env.bool("HUB_BRIDGE_LOOPBACK_USERS", False)
# Web pages (the Origin of a WebSocket handshake) that may open bridge sockets, besides the hub's own origin
# (scheme://host[:port], as browsers send it); a handshake with any other Origin is refused (HTTP 403).
HUB_ALLOWED_ORIGINS = [o.strip().lower().rstrip("/") for o in env.list("HUB_ALLOWED_ORIGINS", []) if o.strip()]
# Abuse limits (docs/bridge.md "Limits"): chats a token-less user may send per minute from one address; chats one
# socket may have waiting for their reply; acks one socket may have waiting to be stored; bytes written to one
# socket and not yet taken by its client, and how long a socket may stay at that cap before it is closed (1008).
HUB_BRIDGE_ANON_RATE_PER_MINUTE = env.int("HUB_BRIDGE_ANON_RATE_PER_MINUTE", 30, validate=Range(min=1))
HUB_BRIDGE_MAX_PENDING_CHATS = env.int("HUB_BRIDGE_MAX_PENDING_CHATS", 100, validate=Range(min=1))
HUB_BRIDGE_MAX_PENDING_ACKS = env.int("HUB_BRIDGE_MAX_PENDING_ACKS", 20000, validate=Range(min=1))
HUB_BRIDGE_MAX_OUTBOUND_BYTES = env.int("HUB_BRIDGE_MAX_OUTBOUND_BYTES", 4 * 1024 * 1024, validate=Range(min=65536))
HUB_BRIDGE_SEND_STALL = env.float("HUB_BRIDGE_SEND_STALL", 10.0, validate=Range(min=0.1))

# Routing, LingMessage delivery, online detection
HUB_NOTIFY_TIMEOUT = env.float("HUB_NOTIFY_TIMEOUT", 3.0, validate=Range(min=0.1))
HUB_PROBE_CACHE_SECONDS = env.int("HUB_PROBE_CACHE_SECONDS", 60, validate=Range(min=0))
HUB_SEND_RATE_PER_MINUTE = env.int("HUB_SEND_RATE_PER_MINUTE", 100, validate=Range(min=1))
HUB_HTTP_MAX_CONNECTIONS = env.int("HUB_HTTP_MAX_CONNECTIONS", 100, validate=Range(min=1))

# Offline queue and retries (seed 001 "重试策略")
HUB_RETRY_FIRST_DELAY = env.int("HUB_RETRY_FIRST_DELAY", 60, validate=Range(min=1))
HUB_RETRY_MAX_DELAY = env.int("HUB_RETRY_MAX_DELAY", 600, validate=Range(min=1))
HUB_RETRY_MAX_RETRIES = env.int("HUB_RETRY_MAX_RETRIES", 10, validate=Range(min=0))
HUB_MESSAGE_TTL = env.int("HUB_MESSAGE_TTL", 24 * 3600, validate=Range(min=60))
HUB_ALERT_FEISHU_WEBHOOK = env.str("HUB_ALERT_FEISHU_WEBHOOK", "") or None
HUB_ALERT_FEISHU_SECRET = secret("HUB_ALERT_FEISHU_SECRET")
HUB_ALERT_MEMBER = env.str("HUB_ALERT_MEMBER", "") or None
# A worker delivering a sender→recipient pair holds its lease this long (renewed per batch); a crashed
# worker's lease is taken over once it expires.
HUB_QUEUE_LEASE_SECONDS = env.int("HUB_QUEUE_LEASE_SECONDS", 30, validate=Range(min=1))
HUB_QUEUE_BATCH = env.int("HUB_QUEUE_BATCH", 500, validate=Range(min=1, max=10000))
HUB_MESSAGE_RETENTION_DAYS = env.int("HUB_MESSAGE_RETENTION_DAYS", 30, validate=Range(min=1))
# Undelivered messages one recipient may have queued (content, topic and metadata, in characters): beyond it a
# send is refused (HTTP 507), so one sender cannot fill the database for an offline member.
HUB_QUEUE_MAX_BYTES_PER_RECIPIENT = env.int(
    "HUB_QUEUE_MAX_BYTES_PER_RECIPIENT", 50 * 1024 * 1024, validate=Range(min=1024 * 1024)
)

# Reliability (docs/reliability.md): the retry scheduler delivers this many sender→recipient pairs at once (one
# thread and one database connection each), so one member whose endpoint hangs holds one thread, not the rest.
HUB_QUEUE_WORKERS = env.int("HUB_QUEUE_WORKERS", 4, validate=Range(min=1, max=64))
# A chat whose backend socket closed before replying: the user gets an error frame after this many seconds,
# unless the backend registered again in this process meanwhile (its reply may still come then).
HUB_BRIDGE_ORPHAN_GRACE = env.float("HUB_BRIDGE_ORPHAN_GRACE", 3.0, validate=Range(min=0))

# Feishu
FEISHU_APP_ID = env.str("FEISHU_APP_ID", "") or None
FEISHU_APP_SECRET = secret("FEISHU_APP_SECRET")
FEISHU_BASE_URL = env.url("FEISHU_BASE_URL", "https://open.feishu.cn", schemes={"http", "https"})
FEISHU_BASE_URL = (FEISHU_BASE_URL if isinstance(FEISHU_BASE_URL, str) else FEISHU_BASE_URL.geturl()).rstrip("/")
FEISHU_VERIFICATION_TOKEN = secret("FEISHU_VERIFICATION_TOKEN")
FEISHU_ENCRYPT_KEY = secret("FEISHU_ENCRYPT_KEY")
FEISHU_POLL_INTERVAL = env.float("FEISHU_POLL_INTERVAL", 3.0, validate=Range(min=0.1))
FEISHU_GROUP_GAP = env.float("FEISHU_GROUP_GAP", 1.0, validate=Range(min=0))
FEISHU_GROUP_TTL = env.int("FEISHU_GROUP_TTL", 600, validate=Range(min=1))
FEISHU_HTTP_TIMEOUT = env.float("FEISHU_HTTP_TIMEOUT", 10.0, validate=Range(min=0.1))
# Who receives the bot messages the poller relays: "agents" (every enabled agent member) or "feishu_bots"
# (only members with a Feishu bot channel); never the bot that wrote the message.
FEISHU_RELAY_TO = env.str("FEISHU_RELAY_TO", "agents", validate=OneOf(["agents", "feishu_bots"]))

# The notification gateway (docs/gateway.md): how long a click on a card waits for the answer of the member
# that sent the card (Feishu wants the whole callback answered within 3 s), and the toast shown without one.
HUB_CARD_CALLBACK_WAIT = env.float("HUB_CARD_CALLBACK_WAIT", 2.5, validate=Range(min=0, max=2.9))
HUB_CARD_DEFAULT_TOAST = env.str("HUB_CARD_DEFAULT_TOAST", "received")

# Collision coordination
COORD_CLAIM_TTL = env.float("COORD_CLAIM_TTL", 15.0, validate=Range(min=0.01))
COORD_COLLISION_WINDOW = env.float("COORD_COLLISION_WINDOW", 2.0, validate=Range(min=0))
COORD_JITTER_MAX = env.float("COORD_JITTER_MAX", 1.5, validate=Range(min=0))
COLLISION_REPAIR_LLM_URL = env.str("COLLISION_REPAIR_LLM_URL", "") or None
COLLISION_REPAIR_LLM_MODEL = env.str("COLLISION_REPAIR_LLM_MODEL", "gpt-4o-mini")
COLLISION_REPAIR_LLM_KEY = secret("COLLISION_REPAIR_LLM_KEY")

# The family as deployed (docs/compatibility.md): notify TLS, bridge takeover, the LingMessage mailbox.
# A CA bundle trusted for every member's HTTPS notify endpoint, besides SSL_CERT_FILE (or certifi's bundle) and
# each channel's own bundle.
HUB_NOTIFY_CA_FILE = env.path("HUB_NOTIFY_CA_FILE", None)
# A backend already held by a socket stays with it while that socket was heard from within this many seconds
# (any frame), answers an app-level ping within HUB_BRIDGE_PING_DEADLINE, or (for clients that never answer app
# pings) keeps its transport open; a newcomer is then refused with 4002 (docs/bridge.md, "One socket per backend").
HUB_BRIDGE_LIVE_WINDOW = env.float("HUB_BRIDGE_LIVE_WINDOW", 15.0, validate=Range(min=0))
HUB_BRIDGE_PING_DEADLINE = env.float("HUB_BRIDGE_PING_DEADLINE", 2.0, validate=Range(min=0.1, max=30))
# The shared LingMessage mailbox directory (deployed as /home/ai/.lingmessage); unset: mailbox interop is off.
HUB_LINGMESSAGE_DIR = env.path("HUB_LINGMESSAGE_DIR", None)
HUB_LINGMESSAGE_POLL_INTERVAL = env.float("HUB_LINGMESSAGE_POLL_INTERVAL", 2.0, validate=Range(min=0.1))
# Also deliver what members post in LingYi's discussions/ format (LingYi's own senders already notify for those).
HUB_LINGMESSAGE_PICKUP_DISCUSSIONS = env.bool("HUB_LINGMESSAGE_PICKUP_DISCUSSIONS", False)

# Prometheus multi-process directory (set by runhub for every child; prometheus-client reads the env var).
PROMETHEUS_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
