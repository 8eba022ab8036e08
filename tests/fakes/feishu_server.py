"""A fake Feishu (Lark) open platform: a real threaded HTTP server on a loopback port, with state.

It serves the endpoints the hub uses, with Feishu's shapes and error codes:

- ``POST /open-apis/auth/v3/tenant_access_token/internal`` (tokens expire; an expired one answers 99991663)
- ``GET/POST /open-apis/im/v1/messages`` (list: ``start_time``/``end_time`` in seconds, ``sort_type``,
  ``page_size`` ≤ 50, ``page_token``; send with ``uuid`` dedupe within 1 h; 5 messages/s per chat → 230020;
  ``receive_id_type`` chat_id, or open_id/user_id/union_id/email for a person (a p2p chat with the app's bot;
  an unknown person → 230001 "invalid receive_id"))
- ``POST/GET /open-apis/im/v1/messages/:id/reactions`` (list: ``page_size`` ≤ 50, ``page_token``),
  ``DELETE …/reactions/:reaction_id``
- ``GET /open-apis/bot/v3/info``, ``GET /open-apis/im/v1/chats/:id`` (name, …)
- ``POST /open-apis/bot/v2/hook/:token`` (custom bots: signature check 19021, 5/s and 100/min → 11232)

Messages carry string millisecond ``create_time``; a bot sender is identified by its app_id with
``sender_type "app"``, a person by open_id with ``sender_type "user"``; a reaction's operator is the bot's
app_id (``operator_type "app"``) or the person's open_id. An API rate limit answers HTTP 429 with
``x-ogw-ratelimit-reset``; faults (5xx, hangs, bot-not-in-chat, any code) can be injected per endpoint.

It also plays the person who clicks a card: ``set_card_callback(url, …)`` names the app's card callback URL
and ``click(message_id, operator=…)`` posts the click there as Feishu does (``card.action.trigger``, schema 2.0,
or the older format; verification token, encryption and signature as configured), measures the answer and
applies a returned card to the stored message.

Test code drives the same state through a Python API::

    with FakeFeishu() as feishu:
        feishu.register_app("cli_hub", "secret", open_id="ou_hub", name="Hub")
        chat = feishu.create_chat(bots=["cli_hub", "cli_a"])
        feishu.post_message(chat, "cli_a", "hello")
        feishu.add_reaction(message_id, "cli_b", "OnIt")
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import math
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

PREFIX = "/open-apis"
MAX_PAGE_SIZE = 50
UUID_WINDOW = 3600
GROUP_SEND_PER_SECOND = 5
HOOK_PER_SECOND = 5
HOOK_PER_MINUTE = 100
HOOK_SIGN_WINDOW = 3600
NOT_IN_CHAT = 230002


@dataclass
class App:
    app_id: str
    app_secret: str
    open_id: str
    name: str
    tenant_key: str = "tenant_fake"


@dataclass
class Chat:
    chat_id: str
    name: str
    users: list[str] = field(default_factory=list)
    bots: set[str] = field(default_factory=set)


@dataclass
class Hook:
    token: str
    secret: str | None
    chat_id: str | None
    app_id: str
    received: list[dict] = field(default_factory=list)
    sent_at: deque = field(default_factory=deque)


@dataclass
class Fault:
    endpoint: str
    kind: str
    times: int
    chat_id: str | None = None
    status: int = 500
    code: int = 0
    msg: str = ""
    delay: float = 0.0
    reset: int = 1


@dataclass
class Call:
    method: str
    endpoint: str
    path: str
    app_id: str | None
    status: int
    code: int
    at: float
    query: dict = field(default_factory=dict)


@dataclass
class CardCallback:
    url: str
    app_id: str
    verification_token: str
    encrypt_key: str
    legacy: bool
    timeout: float


@dataclass
class Click:
    """One card callback and its answer: HTTP ``status`` (0: no answer within Feishu's timeout), the ``answer``
    body, how long it took and whether that was in time."""

    status: int
    answer: dict
    seconds: float
    in_time: bool
    message_id: str = ""
    operator: str = ""
    value: Any = None
    payload: dict = field(default_factory=dict)  # what Feishu posted (decrypted), for ``resend``


_CALLBACK_TAGS = {"button", "select_static", "overflow", "date_picker", "picker_time", "picker_datetime", "input"}


def _callback_components(node: Any) -> list[dict]:
    """The card's components whose click calls the app back (with a ``value``, or a callback behaviour)."""
    found: list[dict] = []
    if isinstance(node, list):
        for child in node:
            found.extend(_callback_components(child))
    elif isinstance(node, dict):
        behaviors = node.get("behaviors")
        callbacks = [b for b in behaviors or [] if isinstance(b, dict) and b.get("type") == "callback"]
        if callbacks:  # schema 2.0: a callback behaviour on a component or a container (interactive_container)
            found.append({"tag": node.get("tag", ""), "value": callbacks[0].get("value")})
        elif node.get("tag") in _CALLBACK_TAGS and "value" in node and not isinstance(behaviors, list):
            found.append(node)
        for key, child in node.items():
            if key not in ("value", "behaviors") and isinstance(child, dict | list):
                found.extend(_callback_components(child))
    return found


def _answered_card(answer: dict, *, legacy: bool) -> dict | None:
    """The card an app's answer puts in place of the clicked one, if any: a raw card, or a template as
    ``{"type": "template", "data"}`` (the content of an interactive message that is a template). Any other
    ``card`` shape is not rendered (the clicked card stays)."""
    if legacy:  # the body is the card itself, or a toast
        return answer if answer and "toast" not in answer else None
    card = answer.get("card") if isinstance(answer, dict) else None
    if not isinstance(card, dict) or not isinstance(card.get("data"), dict):
        return None
    if card.get("type") == "raw" and card["data"].get("type") not in ("template", "raw"):
        return card["data"]
    if card.get("type") == "template" and isinstance(card["data"].get("template_id"), str):
        return {"type": "template", "data": card["data"]}
    return None


def _encrypt(encrypt_key: str, payload: dict) -> str:
    """Feishu's callback encryption: AES-256-CBC, key = SHA-256(encrypt key), base64(16-byte IV + ciphertext)."""
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    iv = secrets.token_bytes(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(json.dumps(payload).encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(hashlib.sha256(encrypt_key.encode()).digest()), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + encryptor.update(padded) + encryptor.finalize()).decode()


class ApiError(Exception):
    def __init__(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg, self.headers = status, code, msg, headers or {}


class FakeFeishu:
    """The fake platform. ``start()``/``stop()`` (or ``with``) run the HTTP server; ``url`` is its base URL."""

    def __init__(self, *, token_ttl: int = 7200, clock=time.time) -> None:
        self.clock = clock
        self.token_ttl = token_ttl
        self.lock = threading.RLock()
        self.apps: dict[str, App] = {}
        self.users: dict[str, str] = {}
        self.chats: dict[str, Chat] = {}
        self.messages: dict[str, list[dict]] = defaultdict(list)
        self.by_id: dict[str, dict] = {}
        self.reactions: dict[str, list[dict]] = defaultdict(list)
        self.tokens: dict[str, tuple[str, float]] = {}
        self.current_token: dict[str, str] = {}
        self.uuids: dict[tuple[str, str], tuple[str, float]] = {}
        self.hooks: dict[str, Hook] = {}
        self.p2p: dict[tuple[str, str], str] = {}  # (app_id, person) → the p2p chat of the app's bot and the person
        self.card_callback: CardCallback | None = None
        self.clicks: list[Click] = []
        self.faults: list[Fault] = []
        self.calls: list[Call] = []
        self.rate_limits: dict[str | None, tuple[int, float]] = {}
        self._rate_windows: dict[tuple, int] = defaultdict(int)
        self._group_sends: dict[str, deque] = defaultdict(deque)
        self._ids = itertools.count(1)
        self._last_ms = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # --- server ---------------------------------------------------------------------------------------
    def start(self) -> FakeFeishu:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-feishu", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeFeishu:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # --- state, for test code -------------------------------------------------------------------------
    def register_app(
        self, app_id: str, app_secret: str | None = None, open_id: str | None = None, name: str | None = None
    ) -> App:
        """A Feishu app with a bot. Its messages and reactions carry ``app_id``; ``/bot/v3/info`` shows ``open_id``."""
        with self.lock:
            app = App(
                app_id=app_id,
                app_secret=app_secret or secrets.token_hex(8),
                open_id=open_id or f"ou_{hashlib.sha1(app_id.encode()).hexdigest()[:16]}",
                name=name or app_id,
            )
            self.apps[app_id] = app
            return app

    def add_user(self, open_id: str, name: str | None = None) -> str:
        with self.lock:
            self.users[open_id] = name or open_id
            return open_id

    def create_chat(
        self, chat_id: str | None = None, *, name: str = "", users: list[str] = (), bots: list[str] = ()
    ) -> str:
        with self.lock:
            chat_id = chat_id or f"oc_{secrets.token_hex(8)}"
            for open_id in users:
                self.users.setdefault(open_id, open_id)
            self.chats[chat_id] = Chat(chat_id=chat_id, name=name or chat_id, users=list(users), bots=set(bots))
            return chat_id

    def add_bot(self, chat_id: str, app_id: str) -> None:
        with self.lock:
            self.chats[chat_id].bots.add(app_id)

    def remove_bot(self, chat_id: str, app_id: str) -> None:
        with self.lock:
            self.chats[chat_id].bots.discard(app_id)

    def post_message(
        self,
        chat_id: str,
        sender: str,
        text: str | None = None,
        *,
        msg_type: str = "text",
        content: dict | None = None,
        mentions: list[str] = (),
        create_time_ms: int | None = None,
        parent_id: str = "",
    ) -> dict:
        """Put a message in ``chat_id`` as ``sender`` (a registered app_id → a bot, else a person's open_id).

        ``text`` makes a text message; ``content`` (with ``msg_type`` "post", "interactive", …) any other.
        Returns the message as the list API shows it."""
        with self.lock:
            body = content if content is not None else {"text": text or ""}
            return self._store_message(chat_id, sender, msg_type, body, mentions, create_time_ms, parent_id)

    def add_reaction(self, message_id: str, operator: str, emoji_type: str = "OnIt") -> dict:
        """``operator`` is an app_id (a bot) or an open_id (a person). Returns the reaction."""
        with self.lock:
            return self._store_reaction(message_id, operator, emoji_type)

    def delete_reaction(self, message_id: str, reaction_id: str) -> None:
        with self.lock:
            self.reactions[message_id] = [r for r in self.reactions[message_id] if r["reaction_id"] != reaction_id]

    def list_messages(self, chat_id: str) -> list[dict]:
        with self.lock:
            return [dict(m) for m in self.messages[chat_id]]

    def list_reactions(self, message_id: str) -> list[dict]:
        with self.lock:
            return [dict(r) for r in self.reactions[message_id]]

    def create_webhook(self, *, secret: str | None = None, chat_id: str | None = None, name: str = "") -> str:
        """A custom-bot webhook (optionally signed, optionally posting into ``chat_id``); returns its URL."""
        with self.lock:
            token = secrets.token_hex(16)
            app_id = f"cli_hook_{token[:8]}"
            self.register_app(app_id, name=name or f"hook {token[:8]}")
            if chat_id:
                self.chats[chat_id].bots.add(app_id)
            self.hooks[token] = Hook(token=token, secret=secret, chat_id=chat_id, app_id=app_id)
            return f"{self.url}{PREFIX}/bot/v2/hook/{token}"

    def user_messages(self, person: str) -> list[dict]:
        """What app bots sent to ``person`` (an open_id, user_id, union_id or email) in their p2p chats."""
        with self.lock:
            chats = [chat for (_, who), chat in self.p2p.items() if who == person]
            return [dict(m) for chat in chats for m in self.messages[chat]]

    def message(self, message_id: str) -> dict:
        with self.lock:
            return dict(self.by_id[message_id])

    def set_card_callback(
        self,
        url: str,
        *,
        app_id: str,
        verification_token: str = "",
        encrypt_key: str = "",
        legacy: bool = False,
        timeout: float = 3.0,
    ) -> None:
        """Where the app ``app_id`` receives card callbacks, and how Feishu signs them (``legacy``: the older
        card request URL format). Feishu waits ``timeout`` seconds for an answer."""
        with self.lock:
            self.card_callback = CardCallback(url, app_id, verification_token, encrypt_key, legacy, timeout)

    def verify_card_callback(self) -> Click:
        """The ``url_verification`` challenge Feishu posts when the callback URL is saved (the older card request
        URL: in plaintext, with the verification token); returns its ``Click`` (``answer``: the app's answer)."""
        callback = self.card_callback
        assert callback is not None, "set_card_callback() first"
        payload = {"challenge": secrets.token_hex(8), "token": callback.verification_token, "type": "url_verification"}
        click = self._post_callback(callback, payload, plaintext=callback.legacy)
        click.payload = payload
        return click

    def resend(self, click: Click) -> Click:
        """Post ``click``'s callback again, as Feishu's retry does: the same payload (the same event id or update
        token), a new timestamp, nonce and signature. The answer is not applied to the card."""
        callback = self.card_callback
        assert callback is not None and click.payload, "a click made by click() first"
        return self._post_callback(callback, click.payload)

    def click(self, message_id: str, *, operator: str, index: int = 0) -> Click:
        """A person (``operator``, an open_id) clicks the ``index``-th callback component of the card
        ``message_id``: the callback goes to the app's URL and the answer comes back like Feishu's client
        gets it. A card in the answer replaces the message's card. Returns the ``Click``."""
        callback = self.card_callback
        assert callback is not None, "set_card_callback() first"
        with self.lock:
            message = dict(self.by_id[message_id])
        components = _callback_components(json.loads(message["body"]["content"]))
        component = components[index]
        update_token = f"c-{secrets.token_hex(12)}"
        action = {"value": component.get("value"), "tag": component.get("tag", "button")}
        if callback.legacy:
            payload = {
                "open_id": operator, "user_id": f"u_{operator[-8:]}", "open_message_id": message_id,
                "open_chat_id": message["chat_id"], "tenant_key": "tenant_fake", "token": update_token,
                "action": action,
            }  # fmt: skip
        else:
            payload = {
                "schema": "2.0",
                "header": {
                    "event_id": secrets.token_hex(16), "token": callback.verification_token,
                    "create_time": str(int(self.clock() * 1000)), "event_type": "card.action.trigger",
                    "tenant_key": "tenant_fake", "app_id": callback.app_id,
                },
                "event": {
                    "operator": {"tenant_key": "tenant_fake", "open_id": operator, "user_id": f"u_{operator[-8:]}",
                                 "union_id": f"on_{operator[-8:]}"},
                    "token": update_token, "action": action, "host": "im_message",
                    "context": {"open_message_id": message_id, "open_chat_id": message["chat_id"]},
                },
            }  # fmt: skip
        click = self._post_callback(callback, payload)
        click.message_id, click.operator, click.value = message_id, operator, component.get("value")
        click.payload = payload
        card = _answered_card(click.answer, legacy=callback.legacy)
        if card is not None:
            with self.lock:
                stored = self.by_id[message_id]
                stored["body"] = {"content": json.dumps(card, ensure_ascii=False)}
                stored["updated"] = True
                stored["update_time"] = str(self._now_ms())
        with self.lock:
            self.clicks.append(click)
        return click

    def _post_callback(self, callback: CardCallback, payload: dict, *, plaintext: bool = False) -> Click:
        """Post ``payload`` as Feishu does: encrypted with the app's encrypt key (unless ``plaintext``: the older
        card request URL's challenge), signed by the key (SHA-256) or, the older card request URL, by the
        verification token (SHA-1 over the body as sent, encrypted or not); the older URL's challenge unsigned."""
        import httpx

        raw = json.dumps(payload, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"}
        timestamp, nonce = str(int(self.clock())), secrets.token_hex(8)
        if callback.encrypt_key and not plaintext:
            raw = json.dumps({"encrypt": _encrypt(callback.encrypt_key, payload)}).encode()
        if callback.legacy and not plaintext:
            signature = hashlib.sha1((timestamp + nonce + callback.verification_token).encode() + raw)
            headers.update({"X-Lark-Request-Timestamp": timestamp, "X-Lark-Request-Nonce": nonce,
                            "X-Lark-Signature": signature.hexdigest()})  # fmt: skip
        elif callback.encrypt_key and not callback.legacy:
            signature = hashlib.sha256(timestamp.encode() + nonce.encode() + callback.encrypt_key.encode() + raw)
            headers.update({"X-Lark-Request-Timestamp": timestamp, "X-Lark-Request-Nonce": nonce,
                            "X-Lark-Signature": signature.hexdigest()})  # fmt: skip
        started = time.monotonic()
        try:
            response = httpx.post(callback.url, content=raw, headers=headers, timeout=callback.timeout)
        except httpx.TimeoutException:
            return Click(status=0, answer={}, seconds=time.monotonic() - started, in_time=False)
        seconds = time.monotonic() - started
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        return Click(status=response.status_code, answer=answer, seconds=seconds, in_time=seconds < callback.timeout)

    def webhook_messages(self, url_or_token: str) -> list[dict]:
        with self.lock:
            return list(self.hooks[url_or_token.rsplit("/", 1)[-1]].received)

    def expire_tokens(self) -> None:
        """Every tenant token issued so far is now expired (the next call with one answers 99991663)."""
        with self.lock:
            self.tokens = {t: (app, 0.0) for t, (app, _) in self.tokens.items()}
            self.current_token.clear()

    def set_rate_limit(self, limit: int, per_seconds: float = 1.0, *, endpoint: str | None = None) -> None:
        """At most ``limit`` calls per app (per endpoint when given) in each ``per_seconds`` window; more → 429."""
        with self.lock:
            self.rate_limits[endpoint] = (limit, per_seconds)

    def inject_fault(
        self,
        endpoint: str,
        kind: str,
        *,
        times: int = 1,
        chat_id: str | None = None,
        status: int | None = None,
        code: int | None = None,
        msg: str = "",
        delay: float = 5.0,
        reset: int = 1,
    ) -> None:
        """The next ``times`` calls to ``endpoint`` (e.g. "messages.list", "tenant_access_token", "hook", "*")
        fail. ``kind``: "5xx" (HTTP ``status``, default 500), "hang" (answer after ``delay`` s), "not_in_chat"
        (230002), "rate_limit" (429 with reset ``reset`` s), or "error" (HTTP ``status`` with ``code``/``msg``)."""
        defaults = {"5xx": (500, 0), "not_in_chat": (400, NOT_IN_CHAT), "rate_limit": (429, 99991400)}
        d_status, d_code = defaults.get(kind, (400, 0))
        with self.lock:
            self.faults.append(
                Fault(
                    endpoint=endpoint,
                    kind=kind,
                    times=times,
                    chat_id=chat_id,
                    status=status or d_status,
                    code=code if code is not None else d_code,
                    msg=msg,
                    delay=delay,
                    reset=reset,
                )
            )

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()
            self.rate_limits.clear()

    def count_calls(self, *, app_id: str | None = None, endpoint: str | None = None, since: float = 0.0) -> int:
        with self.lock:
            return sum(
                1
                for c in self.calls
                if (app_id is None or c.app_id == app_id)
                and (endpoint is None or c.endpoint == endpoint)
                and c.at >= since
            )

    # --- internals ------------------------------------------------------------------------------------
    def _now_ms(self) -> int:
        # Strictly increasing, so two messages never share a create_time by accident.
        ms = max(int(self.clock() * 1000), self._last_ms + 1)
        self._last_ms = ms
        return ms

    def _sender(self, sender: str) -> dict:
        app = self.apps.get(sender)
        if app is not None:
            return {"id": app.app_id, "id_type": "app_id", "sender_type": "app", "tenant_key": app.tenant_key}
        return {"id": sender, "id_type": "open_id", "sender_type": "user", "tenant_key": "tenant_fake"}

    def _mention(self, n: int, who: str) -> dict:
        app = self.apps.get(who) or next((a for a in self.apps.values() if a.open_id == who), None)
        open_id, name = (app.open_id, app.name) if app else (who, self.users.get(who, who))
        return {"key": f"@_user_{n}", "id": open_id, "id_type": "open_id", "name": name, "tenant_key": "tenant_fake"}

    def _store_message(
        self,
        chat_id: str,
        sender: str,
        msg_type: str,
        body: Any,
        mentions: list[str],
        create_time_ms: int | None,
        parent_id: str = "",
    ) -> dict:
        if chat_id not in self.chats:
            raise KeyError(f"no chat {chat_id}")
        created = create_time_ms if create_time_ms is not None else self._now_ms()
        parent = self.by_id.get(parent_id) if parent_id else None
        message = {
            "message_id": f"om_{next(self._ids):06d}{secrets.token_hex(6)}",
            "root_id": (parent.get("root_id") or parent["message_id"]) if parent else "",
            "parent_id": parent_id,
            "thread_id": "",
            "msg_type": msg_type,
            "create_time": str(created),
            "update_time": str(created),
            "deleted": False,
            "updated": False,
            "chat_id": chat_id,
            "sender": self._sender(sender),
            "body": {"content": body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)},
            "mentions": [self._mention(i + 1, who) for i, who in enumerate(mentions)],
            "upper_message_id": "",
        }
        messages = self.messages[chat_id]
        messages.append(message)
        messages.sort(key=lambda m: int(m["create_time"]))
        self.by_id[message["message_id"]] = message
        return dict(message)

    def _store_reaction(self, message_id: str, operator: str, emoji_type: str) -> dict:
        if message_id not in self.by_id:
            raise ApiError(400, 231003, "The message is not found")
        is_app = operator in self.apps
        reaction = {
            "reaction_id": f"rc_{secrets.token_hex(8)}",
            "operator": {"operator_id": operator, "operator_type": "app" if is_app else "user"},
            "action_time": str(self._now_ms()),
            "reaction_type": {"emoji_type": emoji_type},
        }
        self.reactions[message_id].append(reaction)
        return dict(reaction)

    def _take_fault(self, endpoint: str, chat_id: str | None) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.endpoint not in (endpoint, "*") or fault.times <= 0:
                    continue
                if fault.chat_id and fault.chat_id != chat_id:
                    continue
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def _check_rate(self, app_id: str, endpoint: str) -> None:
        for key in (endpoint, None):
            if key not in self.rate_limits:
                continue
            limit, per = self.rate_limits[key]
            now = self.clock()
            window = math.floor(now / per)
            counter = (app_id, key, window)
            self._rate_windows[counter] += 1
            if self._rate_windows[counter] > limit:
                reset = max(1, math.ceil((window + 1) * per - now))
                raise ApiError(
                    429,
                    99991400,
                    "request trigger frequency limit",
                    {"x-ogw-ratelimit-limit": str(limit), "x-ogw-ratelimit-reset": str(reset)},
                )

    def _auth(self, headers) -> App:
        value = headers.get("Authorization", "")
        if not value.startswith("Bearer ") or not value[7:]:
            raise ApiError(400, 99991661, "Missing access token for authorization")
        token = value[7:]
        entry = self.tokens.get(token)
        if entry is None or entry[1] <= self.clock():
            raise ApiError(400, 99991663, "Invalid access token for authorization. Please make a request with token.")
        return self.apps[entry[0]]

    def _chat_for(self, app: App, chat_id: str) -> Chat:
        chat = self.chats.get(chat_id)
        if chat is None:
            raise ApiError(400, 230001, "Your request contains an invalid request parameter, ext=invalid chat_id.")
        if app.app_id not in chat.bots:
            raise ApiError(400, NOT_IN_CHAT, "Bot/User can NOT be out of the chat.")
        return chat

    # --- endpoint handlers: each returns (status, body dict) or raises ApiError --------------------------
    def api_token(self, body: dict) -> dict:
        app = self.apps.get(body.get("app_id", ""))
        if app is None or not hmac.compare_digest(app.app_secret, str(body.get("app_secret", ""))):
            raise ApiError(400, 10014, "app secret invalid")
        now = self.clock()
        token = self.current_token.get(app.app_id)
        if token is None or self.tokens[token][1] - now < 1800 or self.tokens[token][1] <= now:
            token = f"t-{secrets.token_hex(16)}"
            self.tokens[token] = (app.app_id, now + self.token_ttl)
            self.current_token[app.app_id] = token
        expire = int(self.tokens[token][1] - now)
        return {"code": 0, "msg": "ok", "tenant_access_token": token, "expire": expire}

    def api_list_messages(self, app: App, query: dict[str, str]) -> dict:
        if query.get("container_id_type") != "chat":
            raise ApiError(400, 230001, "invalid container_id_type")
        chat = self._chat_for(app, query.get("container_id", ""))
        try:
            page_size = int(query.get("page_size", "20"))
            start = int(query["start_time"]) * 1000 if query.get("start_time") else None
            end = int(query["end_time"]) * 1000 if query.get("end_time") else None
            offset = int(base64.urlsafe_b64decode(query["page_token"]).decode()) if query.get("page_token") else 0
        except (ValueError, KeyError):
            raise ApiError(400, 99992402, "field validation failed") from None
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ApiError(400, 99992402, "field validation failed: page_size must be between 1 and 50")
        items = [
            m
            for m in self.messages[chat.chat_id]
            if (start is None or int(m["create_time"]) >= start) and (end is None or int(m["create_time"]) <= end)
        ]
        if query.get("sort_type", "ByCreateTimeAsc") == "ByCreateTimeDesc":
            items = items[::-1]
        page = items[offset : offset + page_size]
        has_more = offset + page_size < len(items)
        data: dict[str, Any] = {"has_more": has_more, "items": [dict(m) for m in page]}
        if has_more:
            data["page_token"] = base64.urlsafe_b64encode(str(offset + page_size).encode()).decode()
        return {"code": 0, "msg": "success", "data": data}

    def _send(self, app: App, chat_id: str, body: dict, parent_id: str = "") -> dict:
        chat = self._chat_for(app, chat_id)
        msg_type, content = body.get("msg_type"), body.get("content")
        if not msg_type or not isinstance(content, str):
            raise ApiError(400, 230001, "Your request contains an invalid request parameter, ext=content.")
        try:
            parsed = json.loads(content)
        except ValueError:
            raise ApiError(
                400, 230001, "Your request contains an invalid request parameter, ext=invalid content."
            ) from None
        now = self.clock()
        uuid = body.get("uuid")
        if uuid:
            seen = self.uuids.get((app.app_id, uuid))
            if seen and now - seen[1] < UUID_WINDOW:
                return {"code": 0, "msg": "success", "data": dict(self.by_id[seen[0]])}
        sends = self._group_sends[chat.chat_id]
        while sends and now - sends[0] >= 1.0:
            sends.popleft()
        if len(sends) >= GROUP_SEND_PER_SECOND:
            raise ApiError(400, 230020, "This operation triggers the frequency limit.")
        sends.append(now)
        message = self._store_message(chat.chat_id, app.app_id, msg_type, parsed, [], None, parent_id)
        if uuid:
            self.uuids[(app.app_id, uuid)] = (message["message_id"], now)
        return {"code": 0, "msg": "success", "data": message}

    def api_send(self, app: App, query: dict[str, str], body: dict) -> dict:
        id_type = query.get("receive_id_type")
        if id_type == "chat_id":
            return self._send(app, body.get("receive_id", ""), body)
        if id_type not in ("open_id", "user_id", "union_id", "email"):
            raise ApiError(400, 230001, "Your request contains an invalid request parameter, ext=receive_id_type.")
        person = body.get("receive_id", "")
        if person not in self.users:
            raise ApiError(400, 230001, "Your request contains an invalid request parameter, ext=invalid receive_id.")
        chat_id = self.p2p.get((app.app_id, person))
        if chat_id is None:
            chat_id = f"oc_p2p{hashlib.sha1(f'{app.app_id}:{person}'.encode()).hexdigest()[:14]}"
            self.chats[chat_id] = Chat(chat_id=chat_id, name=person, users=[person], bots={app.app_id})
            self.p2p[(app.app_id, person)] = chat_id
        return self._send(app, chat_id, body)

    def api_add_reaction(self, app: App, message_id: str, body: dict) -> dict:
        message = self.by_id.get(message_id)
        if message is None:
            raise ApiError(400, 231003, "The message is not found")
        self._chat_for(app, message["chat_id"])
        emoji = (body.get("reaction_type") or {}).get("emoji_type")
        if not emoji:
            raise ApiError(400, 231001, "reaction type is invalid")
        return {"code": 0, "msg": "success", "data": self._store_reaction(message_id, app.app_id, emoji)}

    def api_list_reactions(self, app: App, message_id: str, query: dict[str, str]) -> dict:
        message = self.by_id.get(message_id)
        if message is None:
            raise ApiError(400, 231003, "The message is not found")
        self._chat_for(app, message["chat_id"])
        items = self.reactions[message_id]
        if query.get("reaction_type"):
            items = [r for r in items if r["reaction_type"]["emoji_type"] == query["reaction_type"]]
        try:
            page_size = int(query.get("page_size", "20"))
            offset = int(base64.urlsafe_b64decode(query["page_token"]).decode()) if query.get("page_token") else 0
        except ValueError:
            raise ApiError(400, 99992402, "field validation failed") from None
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ApiError(400, 99992402, "field validation failed: page_size must be between 1 and 50")
        has_more = offset + page_size < len(items)
        data: dict[str, Any] = {"has_more": has_more, "items": [dict(r) for r in items[offset : offset + page_size]]}
        if has_more:
            data["page_token"] = base64.urlsafe_b64encode(str(offset + page_size).encode()).decode()
        return {"code": 0, "msg": "success", "data": data}

    def api_delete_reaction(self, app: App, message_id: str, reaction_id: str) -> dict:
        for reaction in self.reactions.get(message_id, []):
            if reaction["reaction_id"] == reaction_id:
                if reaction["operator"]["operator_id"] != app.app_id:
                    raise ApiError(400, 231007, "The operator is not the reaction owner")
                self.reactions[message_id].remove(reaction)
                return {"code": 0, "msg": "success", "data": dict(reaction)}
        raise ApiError(400, 231005, "The reaction is not found")

    def api_bot_info(self, app: App) -> dict:
        return {
            "code": 0,
            "msg": "ok",
            "bot": {
                "activate_status": 2,
                "app_name": app.name,
                "avatar_url": "",
                "ip_white_list": [],
                "open_id": app.open_id,
            },
        }

    def api_chat_get(self, app: App, chat_id: str) -> dict:
        chat = self._chat_for(app, chat_id)
        data = {"name": chat.name, "description": "", "chat_mode": "group", "chat_type": "private",
                "owner_id_type": "open_id", "owner_id": chat.users[0] if chat.users else "",
                "user_count": str(len(chat.users)), "bot_count": str(len(chat.bots))}  # fmt: skip
        return {"code": 0, "msg": "success", "data": data}

    def api_hook(self, token: str, raw: bytes) -> dict:
        hook = self.hooks.get(token)
        if hook is None:
            raise ApiError(404, 19001, "param invalid: incoming webhook access token invalid")
        try:
            body = json.loads(raw)
        except ValueError:
            raise ApiError(400, 9499, "Bad Request") from None
        now = self.clock()
        if hook.secret:
            timestamp = str(body.get("timestamp", ""))
            string_to_sign = f"{timestamp}\n{hook.secret}".encode()
            expected = base64.b64encode(hmac.new(string_to_sign, b"", hashlib.sha256).digest()).decode()
            fresh = timestamp.isdigit() and abs(now - int(timestamp)) <= HOOK_SIGN_WINDOW
            if not fresh or not hmac.compare_digest(expected, str(body.get("sign", ""))):
                return {
                    "code": 19021,
                    "msg": "sign match fail or timestamp is not within one hour from current time",
                    "data": {},
                }
        while hook.sent_at and now - hook.sent_at[0] >= 60:
            hook.sent_at.popleft()
        last_second = sum(1 for t in hook.sent_at if now - t < 1.0)
        if last_second >= HOOK_PER_SECOND or len(hook.sent_at) >= HOOK_PER_MINUTE:
            return {"code": 11232, "msg": f"frequency limited psm[lark.oapi.app_platform_runtime]appID[{token[:8]}]"}
        msg_type = body.get("msg_type")
        content = body.get("card") if msg_type == "interactive" else body.get("content")
        if msg_type not in ("text", "post", "interactive", "image", "share_chat") or not isinstance(content, dict):
            return {"code": 19002, "msg": "params error, msg_type or content invalid", "data": {}}
        if msg_type == "text" and not isinstance(content.get("text"), str):
            return {"code": 19002, "msg": "params error, text content invalid", "data": {}}
        hook.sent_at.append(now)
        hook.received.append(body)
        if hook.chat_id:
            post_body = content.get("post", content) if msg_type == "post" else content
            self._store_message(hook.chat_id, hook.app_id, msg_type, post_body, [], None)
        return {"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"}


_ROUTES: list[tuple[str, tuple[str, ...], str]] = [
    # (method, path parts after /open-apis, endpoint label); ":x" matches one part.
    ("POST", ("auth", "v3", "tenant_access_token", "internal"), "tenant_access_token"),
    ("GET", ("im", "v1", "messages"), "messages.list"),
    ("POST", ("im", "v1", "messages"), "messages.create"),
    ("POST", ("im", "v1", "messages", ":id", "reactions"), "reactions.create"),
    ("GET", ("im", "v1", "messages", ":id", "reactions"), "reactions.list"),
    ("DELETE", ("im", "v1", "messages", ":id", "reactions", ":rid"), "reactions.delete"),
    ("GET", ("bot", "v3", "info"), "bot.info"),
    ("GET", ("im", "v1", "chats", ":id"), "chat.get"),
    ("POST", ("bot", "v2", "hook", ":id"), "hook"),
]


def _route(method: str, path: str) -> tuple[str, list[str]] | None:
    if not path.startswith(PREFIX + "/"):
        return None
    parts = path[len(PREFIX) + 1 :].strip("/").split("/")
    for r_method, pattern, label in _ROUTES:
        if r_method != method or len(pattern) != len(parts):
            continue
        args = []
        for want, got in zip(pattern, parts, strict=True):
            if want.startswith(":"):
                args.append(got)
            elif want != got:
                break
        else:
            return label, args
    return None


class _Handler(BaseHTTPRequestHandler):
    fake: FakeFeishu
    protocol_version = "HTTP/1.1"
    # Headers and body are written separately: without TCP_NODELAY each answer waits ~40 ms for a delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args) -> None:  # quiet test output
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        fake = self.fake
        parsed = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        routed = _route(method, parsed.path)
        if routed is None:
            self._reply(404, {"code": 404, "msg": "404 page not found"})
            return
        endpoint, args = routed
        app_id: str | None = None
        status, code = 200, 0
        # The call is recorded before the answer goes out: a client holding its answer finds it in ``calls``.
        answer: tuple | None = None
        try:
            chat_id = query.get("container_id") or (args[0] if endpoint.startswith("chat.") else None)
            fault = fake._take_fault(endpoint, chat_id)
            if fault is not None:
                self._apply_fault(fault)
            with fake.lock:
                body = json.loads(raw) if raw and endpoint != "hook" else {}
                if endpoint == "tenant_access_token":
                    app_id = body.get("app_id")
                    result = fake.api_token(body)
                elif endpoint == "hook":
                    hook = fake.hooks.get(args[0])
                    app_id = hook.app_id if hook else None
                    result = fake.api_hook(args[0], raw)
                else:
                    app = fake._auth(self.headers)
                    app_id = app.app_id
                    fake._check_rate(app.app_id, endpoint)
                    result = self._dispatch(app, endpoint, args, query, body)
            code = int(result.get("code", 0))
            if endpoint == "hook" and code == 9499:
                status = 400
            answer = (status, result)
        except ApiError as exc:
            status, code = exc.status, exc.code
            answer = (exc.status, self._error(exc.code, exc.msg), exc.headers)
        except _Hang:
            status, code = 0, -1
        except ValueError:
            status, code = 400, 9499
            answer = (400, self._error(9499, "Bad Request"))
        finally:
            with fake.lock:
                fake.calls.append(Call(method, endpoint, parsed.path, app_id, status, code, fake.clock(), query))
        if answer is not None:
            self._reply(*answer)

    def _dispatch(self, app: App, endpoint: str, args: list[str], query: dict, body: dict) -> dict:
        fake = self.fake
        if endpoint == "messages.list":
            return fake.api_list_messages(app, query)
        if endpoint == "messages.create":
            return fake.api_send(app, query, body)
        if endpoint == "reactions.create":
            return fake.api_add_reaction(app, args[0], body)
        if endpoint == "reactions.list":
            return fake.api_list_reactions(app, args[0], query)
        if endpoint == "reactions.delete":
            return fake.api_delete_reaction(app, args[0], args[1])
        if endpoint == "bot.info":
            return fake.api_bot_info(app)
        if endpoint == "chat.get":
            return fake.api_chat_get(app, args[0])
        raise ApiError(404, 404, "not found")

    def _apply_fault(self, fault: Fault) -> None:
        if fault.kind == "hang":
            # Answer nothing for `delay` seconds, then drop the connection: the client must time out.
            self.fake._stopping.wait(fault.delay)
            self.close_connection = True
            raise _Hang
        if fault.kind == "rate_limit":
            raise ApiError(
                429,
                fault.code,
                fault.msg or "request trigger frequency limit",
                {"x-ogw-ratelimit-reset": str(fault.reset)},
            )
        if fault.kind == "not_in_chat":
            raise ApiError(fault.status, fault.code, fault.msg or "Bot/User can NOT be out of the chat.")
        if fault.kind == "5xx":
            raise ApiError(fault.status, fault.code or 1500, fault.msg or "internal error")
        raise ApiError(fault.status, fault.code, fault.msg or "injected error")

    @staticmethod
    def _error(code: int, msg: str) -> dict:
        return {"code": code, "msg": msg, "error": {"log_id": f"fake{secrets.token_hex(8)}"}}

    def _reply(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Tt-Logid", (body.get("error") or {}).get("log_id", "fakelog"))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class _Hang(Exception):
    pass
