"""Every environment variable the hub reads, declared once: name, type, default and one line of meaning.

``hub.settings`` reads them through :func:`read` (junk is refused at start-up with a message naming the variable)
and turns them into Django settings; ``docs/configuration.md`` is generated from this declaration
(``python -m foundation.environment > docs/configuration.md``), and a test fails when the two drift apart.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from environs import Env, EnvError
from marshmallow.validate import OneOf, Range

BASE_DIR = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Variable:
    """One environment variable. ``kind`` is how it is parsed: str, int, float, bool, path, list, url, or
    secret (a string from the variable or from the file named by ``<name>_FILE``)."""

    name: str
    kind: str
    default: Any
    meaning: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    # How the docs show a default computed at start-up (a path in the data directory, …).
    shown_default: str | None = None
    # Turns the parsed value into the setting's value (a URL into text, origins into their canonical form).
    clean: Callable[[Any], Any] | None = None

    def read(self, env: Env) -> Any:
        validate = []
        if self.minimum is not None or self.maximum is not None:
            validate.append(Range(min=self.minimum, max=self.maximum))
        if self.choices:
            validate.append(OneOf(self.choices))
        if self.kind == "secret":
            value = _secret(env, self.name, self.default)
        elif self.kind == "url":
            value = env.url(self.name, self.default, schemes={"http", "https"})
        else:
            value = getattr(env, self.kind)(self.name, self.default, validate=validate or None)
        return self.clean(value) if self.clean and value is not None else value

    def type_text(self) -> str:
        text = {"secret": "secret (or a file: `" + self.name + "_FILE`)", "list": "comma-separated list"}.get(
            self.kind, self.kind
        )
        if self.choices:
            text += ": " + " \\| ".join(f"`{choice}`" for choice in self.choices)
        if self.minimum is not None and self.maximum is not None:
            text += f", {self.minimum:g} to {self.maximum:g}"
        elif self.minimum is not None:
            text += f", ≥ {self.minimum:g}"
        return text

    def default_text(self) -> str:
        if self.shown_default is not None:
            return self.shown_default
        if self.default is None or self.default == "":
            return "unset"
        if isinstance(self.default, bool):
            return "`true`" if self.default else "`false`"
        if isinstance(self.default, list):
            return "`" + ",".join(self.default) + "`" if self.default else "empty"
        return f"`{self.default}`"


def _secret(env: Env, name: str, default: str | None) -> str | None:
    value = env.str(name, None)
    if value:
        return value
    path = env.path(f"{name}_FILE", None)
    if path:
        return Path(path).read_text(encoding="utf-8").strip()
    return default


def _url_text(value: Any) -> str:
    return (value if isinstance(value, str) else value.geturl()).rstrip("/")


def _origins(values: list[str]) -> list[str]:
    return [origin.strip().lower().rstrip("/") for origin in values if origin.strip()]


def _none_if_empty(value: str) -> str | None:
    return value or None


def _database_url(value: str) -> str:
    if value and not value.startswith(("sqlite://", "postgres://", "postgresql://")):
        raise EnvError(f'Environment variable "DATABASE_URL" invalid: {value!r} is not sqlite:// or postgres://')
    return value


def _redis_url(value: str) -> str | None:
    if value and not value.startswith(("redis://", "rediss://", "unix://")):
        raise EnvError(f'Environment variable "REDIS_URL" invalid: {value!r} is not a redis:// URL')
    return value or None


def V(name: str, kind: str, default: Any, meaning: str, **options: Any) -> Variable:
    return Variable(name, kind, default, meaning, **options)


SECTIONS: dict[str, tuple[Variable, ...]] = {
    "The hub process": (
        V("HUB_HOST", "str", "127.0.0.1", "Address `runhub` listens on."),
        V("HUB_PORT", "int", 8765, "Port `runhub` listens on (`--port` too).", minimum=1, maximum=65535),
        V(
            "HUB_SERVER",
            "str",
            "uvicorn",
            "ASGI server `runhub` starts (`--server` too); daphne stays supported.",
            choices=("uvicorn", "daphne"),
        ),
        V(
            "HUB_DATA_DIR",
            "path",
            BASE_DIR / "var",
            "Where the embedded default keeps its database, secret key, metrics, run state and Valkey socket (0700).",
            shown_default="`var/` in the project",
        ),
        V(
            "HUB_SECRET_KEY",
            "secret",
            None,
            "Django's secret key.",
            shown_default="generated once, kept in `HUB_DATA_DIR/secret_key`",
        ),
        V("HUB_DEBUG", "bool", False, "Django's debug mode (never in production)."),
        V(
            "HUB_ALLOWED_HOSTS",
            "list",
            ["127.0.0.1", "localhost", "[::1]", "testserver"],
            "Host names the hub answers to.",
        ),
        V("HUB_CSRF_TRUSTED_ORIGINS", "list", [], "Origins trusted for the admin's forms behind a proxy."),
        V(
            "HUB_ADMIN_PASSWORD",
            "secret",
            None,
            "Password of the `admin` account created on first start.",
            shown_default="generated and printed on first start",
        ),
        V(
            "HUB_METRICS_TOKEN",
            "secret",
            None,
            "When set, `/metrics` needs `Authorization: Bearer <token>` (or a staff login).",
        ),
        V(
            "HUB_LOG_LEVEL",
            "str",
            "INFO",
            "Level of the hub's logs; django-q2's line per task (schedules every 30 s included) only at `DEBUG`.",
            choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        ),
        V("HUB_TIME_ZONE", "str", "UTC", "Time zone of the dashboards and the admin."),
    ),
    "Database, Redis and background workers": (
        V(
            "DATABASE_URL",
            "str",
            "",
            "`sqlite://…` or `postgres://…`.",
            shown_default="SQLite file `hub.sqlite3` in `HUB_DATA_DIR`",
            clean=_database_url,
        ),
        V(
            "HUB_DB_CONN_MAX_AGE",
            "int",
            0,
            "Seconds a database connection is kept (0: closed after each request, right under ASGI).",
            minimum=0,
        ),
        V("HUB_TEST_DB_NAME", "str", None, "Name of the PostgreSQL test database (tests only)."),
        V(
            "REDIS_URL",
            "str",
            "",
            "Redis for the channel layer, cache and task broker (credentials in the URL); `runhub` sets its own.",
            shown_default="unset (in-process layer; `runhub` starts an embedded server)",
            clean=_redis_url,
        ),
        V("HUB_REDIS_PREFIX", "str", "linghub", "Prefix of every Redis key and channel the hub uses."),
        V(
            "HUB_Q_WORKERS",
            "int",
            1,
            "django-q2 worker processes (flushes, follow-ups, alerts, schedules; one is enough for them).",
            minimum=1,
            maximum=64,
        ),
        V("HUB_Q_SYNC", "bool", False, "Run django-q2 tasks inline instead of on the workers (debugging, tests)."),
        V(
            "PROMETHEUS_MULTIPROC_DIR",
            "path",
            None,
            "Directory the hub processes share their metrics in (`runhub` sets it for its children).",
            shown_default="unset (`runhub`: in `HUB_DATA_DIR`)",
        ),
    ),
    "TLS": (
        V("HUB_SSL_CERT", "path", None, "PEM certificate (chain) for `https://`/`wss://` on the hub's port."),
        V("HUB_SSL_KEY", "path", None, "Its private key (set both or neither)."),
        V(
            "HUB_BEHIND_TLS",
            "bool",
            False,
            "The hub is reached over https (secure cookies, HSTS, redirects; `check --deploy` clean).",
        ),
        V("HUB_SSL_REDIRECT", "bool", True, "With HUB_BEHIND_TLS: redirect plain HTTP to HTTPS."),
        V("HUB_HSTS_SECONDS", "int", 365 * 24 * 3600, "With HUB_BEHIND_TLS: HSTS max-age.", minimum=0),
        V("HUB_HSTS_INCLUDE_SUBDOMAINS", "bool", True, "With HUB_BEHIND_TLS: HSTS for subdomains too."),
        V("HUB_HSTS_PRELOAD", "bool", False, "With HUB_BEHIND_TLS: ask for HSTS preloading."),
    ),
    "Admin login": (
        V(
            "HUB_LOGIN_FAILURE_LIMIT",
            "int",
            5,
            "Wrong passwords for one user name from one address before that pair is locked out.",
            minimum=1,
        ),
        V("HUB_LOGIN_LOCKOUT_MINUTES", "int", 15, "How long a lockout lasts.", minimum=1),
    ),
    "Bridge WebSocket": (
        V("HUB_BRIDGE_MAX_FRAME_BYTES", "int", 1024 * 1024, "Largest frame accepted.", minimum=1024),
        V("HUB_BRIDGE_PENDING_TTL", "int", 300, "Seconds a chat waits for its reply.", minimum=1),
        V(
            "HUB_BRIDGE_HEARTBEAT_TIMEOUT",
            "int",
            90,
            "Seconds after its hub process stops refreshing a backend's presence before it counts as offline.",
            minimum=5,
        ),
        V("HUB_BRIDGE_ACK_TIMEOUT", "int", 30, "Seconds a delivery waits for its ack before a retry.", minimum=1),
        V(
            "HUB_BRIDGE_LOOPBACK_USERS",
            "bool",
            False,
            "Let token-less user clients on this machine chat (no Origin, no proxy header).",
        ),
        V(
            "HUB_ALLOWED_ORIGINS",
            "list",
            [],
            "Web origins (scheme://host[:port]) that may open bridge sockets besides the hub's own.",
            clean=_origins,
        ),
        V(
            "HUB_BRIDGE_ANON_RATE_PER_MINUTE",
            "int",
            30,
            "Chats a token-less user may send per minute from one address.",
            minimum=1,
        ),
        V("HUB_BRIDGE_MAX_PENDING_CHATS", "int", 100, "Chats one socket may have waiting for a reply.", minimum=1),
        V("HUB_BRIDGE_MAX_PENDING_ACKS", "int", 20000, "Acks one socket may have waiting to be stored.", minimum=1),
        V(
            "HUB_BRIDGE_MAX_OUTBOUND_BYTES",
            "int",
            4 * 1024 * 1024,
            "Bytes written to one socket and not yet taken by its client.",
            minimum=65536,
        ),
        V(
            "HUB_BRIDGE_SEND_STALL",
            "float",
            10.0,
            "Seconds a socket may stay at that cap before it is closed (1008).",
            minimum=0.1,
        ),
        V(
            "HUB_BRIDGE_ORPHAN_GRACE",
            "float",
            3.0,
            "Seconds a chat whose backend left waits for it to come back before the user gets an error.",
            minimum=0,
        ),
        V(
            "HUB_BRIDGE_LIVE_WINDOW",
            "float",
            15.0,
            "A backend's socket heard from within this many seconds keeps the backend (a newcomer gets 4002).",
            minimum=0,
        ),
        V(
            "HUB_BRIDGE_PING_DEADLINE",
            "float",
            2.0,
            "Seconds a holder has to answer the ping that decides a takeover.",
            minimum=0.1,
            maximum=30,
        ),
    ),
    "Routing and delivery": (
        V("HUB_NOTIFY_TIMEOUT", "float", 3.0, "Seconds a LingMessage notify POST may take.", minimum=0.1),
        V("HUB_NOTIFY_CA_FILE", "path", None, "CA bundle trusted for every member's HTTPS notify endpoint."),
        V(
            "SSL_CERT_FILE",
            "path",
            None,
            "CAs trusted for outbound HTTPS, as OpenSSL reads them (read when a client is built).",
            shown_default="unset (certifi's bundle)",
        ),
        V("SSL_CERT_DIR", "path", None, "A directory of CAs trusted for outbound HTTPS, as OpenSSL reads it."),
        V("HUB_PROBE_CACHE_SECONDS", "int", 60, "Seconds an endpoint's online probe is cached.", minimum=0),
        V(
            "HUB_INBOX_VISIBILITY_SECONDS",
            "int",
            60,
            "Seconds a message read from the pull inbox and not acknowledged stays hidden before it comes back.",
            minimum=1,
        ),
        V("HUB_INBOX_MAX_WAIT", "int", 60, "Longest long-poll a pull-inbox read may ask for.", minimum=0, maximum=600),
        V(
            "HUB_INBOX_ONLINE_SECONDS",
            "int",
            90,
            "A member that read its pull inbox within this many seconds counts as online.",
            minimum=1,
        ),
        V(
            "HUB_SEND_RATE_PER_MINUTE",
            "int",
            100,
            "Default per-member send rate (editable per member): API sends, `send` frames, bridge chats.",
            minimum=1,
        ),
        V(
            "HUB_HTTP_MAX_CONNECTIONS",
            "int",
            100,
            "Connections of the one outbound HTTP client (notify endpoints, Feishu, webhooks).",
            minimum=1,
        ),
        V(
            "HUB_HTTP_MAX_RESPONSE_BYTES",
            "int",
            8 * 1024 * 1024,
            "The most of an outbound HTTP answer's body the hub reads; more is an error and is not read.",
            minimum=1024,
        ),
        V(
            "HUB_OPENCLAW_SESSION_KEYS",
            "bool",
            True,
            "Send OpenClaw gateways a `sessionKey` per conversation (the gateway must allow it).",
        ),
        V(
            "HUB_OPENCLAW_WAKE_PRIORITY",
            "int",
            1,
            "A notification of this priority or lower goes to an OpenClaw gateway's `/hooks/wake` (0: never).",
            minimum=0,
            maximum=5,
        ),
        V(
            "HUB_APPRISE_RATE_PER_MINUTE",
            "int",
            20,
            "Messages per minute per Apprise channel without a rate of its own.",
            minimum=1,
        ),
        V("HUB_APPRISE_TIMEOUT", "float", 10.0, "Seconds one Apprise send may take in all.", minimum=0.5),
    ),
    "Offline queue and retries": (
        V("HUB_RETRY_FIRST_DELAY", "int", 60, "Seconds before the first retry (doubling after).", minimum=1),
        V("HUB_RETRY_MAX_DELAY", "int", 600, "Longest wait between two retries, in seconds.", minimum=1),
        V("HUB_RETRY_MAX_RETRIES", "int", 10, "Retries before a message fails.", minimum=0),
        V("HUB_MESSAGE_TTL", "int", 24 * 3600, "Seconds after which an undelivered message expires.", minimum=60),
        V(
            "HUB_MESSAGE_RETENTION_DAYS",
            "int",
            30,
            "Days after which delivered, expired and failed messages are deleted.",
            minimum=1,
        ),
        V(
            "HUB_QUEUE_LEASE_SECONDS",
            "int",
            30,
            "Lease a worker holds on a sender→recipient pair (renewed per batch).",
            minimum=1,
        ),
        V("HUB_QUEUE_BATCH", "int", 500, "Messages a worker delivers per batch.", minimum=1, maximum=10000),
        V(
            "HUB_QUEUE_MAX_BYTES_PER_RECIPIENT",
            "int",
            50 * 1024 * 1024,
            "Characters (content, topic, metadata) one recipient may have undelivered; beyond it a send gets 507.",
            minimum=1024 * 1024,
        ),
        V(
            "HUB_QUEUE_WORKERS",
            "int",
            4,
            "Sender→recipient pairs the retry scheduler delivers at once (a thread each).",
            minimum=1,
            maximum=64,
        ),
        V("HUB_ALERT_MEMBER", "str", "", "Member that receives the queue's alerts.", clean=_none_if_empty),
        V(
            "HUB_ALERT_FEISHU_WEBHOOK",
            "str",
            "",
            "Feishu webhook URL that receives the queue's alerts.",
            clean=_none_if_empty,
        ),
        V("HUB_ALERT_FEISHU_SECRET", "secret", None, "Signing secret of that webhook."),
    ),
    "Feishu": (
        V(
            "FEISHU_APP_ID",
            "str",
            "",
            "The hub's Feishu app (enables the poller and the app bot).",
            clean=_none_if_empty,
        ),
        V("FEISHU_APP_SECRET", "secret", None, "The Feishu app's secret."),
        V(
            "FEISHU_BASE_URL",
            "url",
            "https://open.feishu.cn",
            "Feishu open platform (`https://open.larksuite.com` for Lark).",
            clean=_url_text,
        ),
        V(
            "FEISHU_VERIFICATION_TOKEN",
            "secret",
            None,
            "Verification token of event and card callbacks (callbacks answer 503 until it or the key is set).",
        ),
        V(
            "FEISHU_ENCRYPT_KEY",
            "secret",
            None,
            "Encrypt key of callbacks: each must then carry `X-Lark-Signature` and a timestamp within 5 minutes.",
        ),
        V("FEISHU_POLL_INTERVAL", "float", 3.0, "Seconds between two polls of the active groups.", minimum=0.1),
        V("FEISHU_GROUP_GAP", "float", 1.0, "Seconds between the polls of two groups.", minimum=0),
        V("FEISHU_GROUP_TTL", "int", 600, "Seconds a group stays active after its last message.", minimum=1),
        V(
            "FEISHU_HTTP_TIMEOUT",
            "float",
            10.0,
            "Timeout of one Feishu API or webhook request, in seconds.",
            minimum=0.1,
        ),
        V(
            "FEISHU_RELAY_TO",
            "str",
            "agents",
            "Who receives the bot messages the poller relays.",
            choices=("agents", "feishu_bots"),
        ),
    ),
    "Notification gateway": (
        V(
            "HUB_CARD_CALLBACK_WAIT",
            "float",
            2.5,
            "Seconds a card click waits for the answer of the member that sent the card.",
            minimum=0,
            maximum=2.9,
        ),
        V("HUB_CARD_DEFAULT_TOAST", "str", "received", "Toast shown for a click nobody answered."),
    ),
    "Collision coordination": (
        V("COORD_CLAIM_TTL", "float", 15.0, "Seconds a bot's claim on a group message holds.", minimum=0.01),
        V("COORD_COLLISION_WINDOW", "float", 2.0, "Seconds within which two answers collide.", minimum=0),
        V("COORD_JITTER_MAX", "float", 1.5, "Longest random delay before a bot answers.", minimum=0),
        V(
            "COLLISION_REPAIR_LLM_URL",
            "str",
            "",
            "OpenAI-compatible endpoint that writes repair texts; unset: a fixed text.",
            clean=_none_if_empty,
        ),
        V("COLLISION_REPAIR_LLM_MODEL", "str", "gpt-4o-mini", "Model asked for repair texts."),
        V("COLLISION_REPAIR_LLM_KEY", "secret", None, "API key of that endpoint."),
    ),
    "LingMessage mailbox": (
        V(
            "HUB_LINGMESSAGE_DIR",
            "path",
            None,
            "The family's shared LingMessage mailbox (e.g. `/home/ai/.lingmessage`); unset: no mailbox interop.",
        ),
        V(
            "HUB_LINGMESSAGE_POLL_INTERVAL",
            "float",
            2.0,
            "Seconds between two `runmailbox` passes over the mailbox.",
            minimum=0.1,
        ),
        V(
            "HUB_LINGMESSAGE_PICKUP_DISCUSSIONS",
            "bool",
            False,
            "Also deliver posts in LingYi's `discussions/` format.",
        ),
        V(
            "HUB_LINGMESSAGE_WRITER",
            "str",
            "",
            "The member whose mailbox posts are delivered, under its send policy; others' posts are skipped.",
            shown_default="unset (nothing posted is delivered)",
        ),
    ),
}

VARIABLES: dict[str, Variable] = {v.name: v for section in SECTIONS.values() for v in section}


class Values(dict):
    """The variables' values by name, also readable as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def read(env: Env | None = None, names: Iterable[str] | None = None) -> Values:
    """Every declared variable's value (or those of ``names``); an invalid one raises EnvError naming it."""
    env = env or Env()
    return Values((name, VARIABLES[name].read(env)) for name in (names or VARIABLES))


def markdown() -> str:
    """docs/configuration.md: every variable with its type, default and meaning, section by section."""
    lines = [
        "# Configuration",
        "",
        "Every environment variable the hub reads, generated from `foundation/environment.py` (the one place",
        "each is declared) with `python -m foundation.environment > docs/configuration.md`;",
        "`tests/foundation/test_environment.py` fails when this page and the declaration drift apart. A value the",
        "hub cannot parse stops it at start-up with a message naming the variable. A secret can also be read from",
        "a file: `<NAME>_FILE=/path`.",
    ]
    for title, variables in SECTIONS.items():
        lines += ["", f"## {title}", "", "| variable | type | default | meaning |", "| --- | --- | --- | --- |"]
        lines += [f"| `{v.name}` | {v.type_text()} | {v.default_text()} | {v.meaning} |" for v in variables]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
