"""All outbound HTTP goes through here: shared httpx clients with timeouts and limits, one per TLS setup.

``client()`` is the process-wide client; ``client(Tls(...))`` the one for a TLS setup of its own (a member's
HTTPS endpoint with a self-signed certificate, or one that is not verified at all). Clients and their SSL
contexts are built once and cached. Certificates are verified against ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when
set (as OpenSSL and httpx read them), else certifi's bundle; notify endpoints add ``HUB_NOTIFY_CA_FILE`` and their
channel's own bundle. Proxies from the environment are not used (``trust_env`` stays off).

``pool(Tls(...))`` is the bare connection pool under such a client (httpcore's, which httpx drives): the notify
POST of every routed message uses it directly, without httpx's request and response models, redirect and cookie
handling and header merging around it (0.27 → 0.16 ms of CPU per POST against the same endpoint; see
docs/performance.md, "Send path"). Same TLS contexts, same limits and keep-alive expiry as the clients; it
follows no redirect and reads no proxy settings, as the clients.

Tests point members' endpoints and the Feishu base URL at real local servers; nothing else needs patching.
"""

from __future__ import annotations

import os
import ssl
import threading
from dataclasses import dataclass

import certifi
import httpcore
import httpx
from django.conf import settings

_lock = threading.Lock()
_clients: dict[Tls | None, httpx.Client] = {}
_pools: dict[Tls, httpcore.ConnectionPool] = {}
_contexts: dict[Tls, ssl.SSLContext] = {}

USER_AGENT = "LingHub/0.1"


@dataclass(frozen=True)
class Tls:
    """How to verify an HTTPS server. ``ca``: a CA bundle to trust besides the defaults (PEM text or a file path);
    a server then only has to present a certificate from it, whatever host name it carries (a member's self-signed
    certificate rarely names 127.0.0.1). ``insecure``: no verification at all. ``notify``: also trust
    ``HUB_NOTIFY_CA_FILE`` (the members' notify endpoints)."""

    ca: str = ""
    insecure: bool = False
    notify: bool = False


def _default_trust() -> tuple[str | None, str | None]:
    """The CA file and directory to trust by default: ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when they exist, else
    certifi's bundle."""
    cafile = os.environ.get("SSL_CERT_FILE") or ""
    capath = os.environ.get("SSL_CERT_DIR") or ""
    cafile = cafile if os.path.isfile(cafile) else ""
    capath = capath if os.path.isdir(capath) else ""
    if not cafile and not capath:
        return certifi.where(), None
    return cafile or None, capath or None


def load_ca(context: ssl.SSLContext, ca: str) -> None:
    """Trust the certificates of ``ca`` (PEM text, or the path of a PEM file) in ``context``. Raises ValueError
    saying what is wrong (no such file, no certificate in it)."""
    ca = ca.strip()
    try:
        if "-----BEGIN" in ca:
            context.load_verify_locations(cadata=ca)
        else:
            context.load_verify_locations(cafile=ca)
    except FileNotFoundError:
        raise ValueError(f"CA bundle {ca!r}: no such file") from None
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"CA bundle: no usable certificate ({exc})") from None


def ssl_context(tls: Tls) -> ssl.SSLContext:
    """The SSL context for ``tls``, built once. Raises ValueError when its CA bundle cannot be loaded."""
    context = _contexts.get(tls)
    if context is not None:
        return context
    if tls.insecure:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        cafile, capath = _default_trust()
        context = ssl.create_default_context(cafile=cafile, capath=capath)
        if tls.notify and settings.HUB_NOTIFY_CA_FILE:
            load_ca(context, str(settings.HUB_NOTIFY_CA_FILE))
        if tls.ca:
            load_ca(context, tls.ca)
            # A pinned bundle names who may answer; the URL's host name is not matched against it.
            context.check_hostname = False
    with _lock:
        return _contexts.setdefault(tls, context)


def client(tls: Tls | None = None) -> httpx.Client:
    """The client for ``tls`` (None: the process-wide default), thread-safe and connection-pooled. Per-request
    timeouts override the default. Raises ValueError when the TLS setup's CA bundle cannot be loaded."""
    found = _clients.get(tls)
    if found is not None:
        return found
    context = ssl_context(tls or Tls())
    return _shared(
        _clients,
        tls,
        lambda: httpx.Client(
            timeout=httpx.Timeout(settings.HUB_NOTIFY_TIMEOUT),
            limits=httpx.Limits(
                max_connections=settings.HUB_HTTP_MAX_CONNECTIONS, max_keepalive_connections=_keepalive_connections()
            ),
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
            trust_env=False,
            verify=context,
        ),
    )


KEEPALIVE_EXPIRY = 5.0  # seconds an idle connection is kept (httpx's default, which the clients use)


def pool(tls: Tls) -> httpcore.ConnectionPool:
    """The connection pool for ``tls``, thread-safe, with the clients' limits (see the module docstring). Raises
    ValueError when the TLS setup's CA bundle cannot be loaded."""
    found = _pools.get(tls)
    if found is not None:
        return found
    context = ssl_context(tls)
    return _shared(
        _pools,
        tls,
        lambda: httpcore.ConnectionPool(
            ssl_context=context,
            max_connections=settings.HUB_HTTP_MAX_CONNECTIONS,
            max_keepalive_connections=_keepalive_connections(),
            keepalive_expiry=KEEPALIVE_EXPIRY,
        ),
    )


def _keepalive_connections() -> int:
    return min(20, settings.HUB_HTTP_MAX_CONNECTIONS)


def _shared(store: dict, tls: Tls | None, make):
    """``store[tls]``, made by ``make()`` under the lock by the first thread that asks (built once per process)."""
    with _lock:
        found = store.get(tls)
        if found is None:
            found = store[tls] = make()
    return found


def close() -> None:
    """Close the shared clients and pools and forget the SSL contexts (tests, shutdown, a changed CA file); the
    next call to ``client()`` or ``pool()`` builds them again."""
    with _lock:
        clients = [*_clients.values(), *_pools.values()]
        _clients.clear()
        _pools.clear()
        _contexts.clear()
    for one in clients:
        one.close()
