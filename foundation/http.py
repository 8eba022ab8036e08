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

**A total deadline and a size cap on every call.** Timeouts of httpx and httpcore bound each connect, read and
write, not the call: an endpoint that drips a byte within each read timeout holds the caller for as long as it
likes. Every client and pool here connects through ``DeadlineBackend``, whose sockets bound each operation by the
deadline of the call under way (``deadline(seconds)``, a block in the calling thread: no timer, no thread per
call); each read or write waits at most what is left of it and past it raises the library's
``ReadTimeout``/``WriteTimeout``, so the whole request, status line, headers and body included, ends by then.
``request()`` is the call most code wants: the configured timeout as the total deadline, and the answer's body
streamed and refused past ``HUB_HTTP_MAX_RESPONSE_BYTES`` (``ResponseTooLarge``, an ``httpx.TransportError``
naming the cap) without reading more of it. The clients ask for uncompressed answers.

Tests point members' endpoints and the Feishu base URL at real local servers; nothing else needs patching.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import threading
import time
import zlib
from collections.abc import Iterator
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

_call = threading.local()  # ``at``: the monotonic deadline of the outbound call this thread is making


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every outbound HTTP operation of this thread inside the block ends ``seconds`` from now (an inner block
    may only shorten it): past it a read raises ``ReadTimeout``, a write ``WriteTimeout``, a connect
    ``ConnectTimeout`` (httpcore's, which httpx's clients here raise as httpx's)."""
    outer = getattr(_call, "at", None)
    at = time.monotonic() + seconds
    _call.at = at if outer is None else min(at, outer)
    try:
        yield
    finally:
        _call.at = outer


def _bounded(timeout: float | None, error: type[Exception]) -> float | None:
    """``timeout`` shortened to what is left of the call's deadline; raises ``error`` when nothing is left."""
    at = getattr(_call, "at", None)
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise error("the call's total deadline passed")
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A socket whose every operation ends by the call's deadline (``deadline``)."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        tls = self._stream.start_tls(ssl_context, server_hostname, _bounded(timeout, httpcore.ConnectTimeout))
        return DeadlineStream(tls)

    def get_extra_info(self, info: str):
        return self._stream.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own socket backend, its streams wrapped in ``DeadlineStream``."""

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        timeout = _bounded(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._backend.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        timeout = _bounded(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._backend.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class AnswerRefused(httpx.TransportError):
    """An answer the hub does not read on: the rest is not read (the connection is dropped, not reused)."""


class ResponseTooLarge(AnswerRefused):
    """An answer's body (decoded) over the cap."""


def _decoder(encoding: str):
    """A zlib decompressor for the answer's ``Content-Encoding`` (None: not encoded). Raises ``AnswerRefused`` for
    another encoding: the clients ask for none, and only these can be decoded a bounded piece at a time."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise AnswerRefused(f"the answer is encoded as {encoding!r}, which the hub did not ask for")


# httpcore's errors as httpx's (the most specific first), so callers of the clients catch httpx's as before.
_HTTPX_ERRORS = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except httpcore.TimeoutException as exc:
        raise _httpx_error(exc) from exc
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.ProxyError, httpcore.UnsupportedProtocol) as exc:
        raise _httpx_error(exc) from exc


def _httpx_error(exc: Exception) -> Exception:
    for core, mapped in _HTTPX_ERRORS:
        if isinstance(exc, core):
            return mapped(str(exc))
    return exc


class _BodyStream(httpx.SyncByteStream):
    def __init__(self, stream) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx_errors():
            yield from self._stream

    def close(self) -> None:
        self._stream.close()


class DeadlineTransport(httpx.BaseTransport):
    """The clients' transport: httpx's requests over an httpcore pool on ``DeadlineBackend`` (what
    ``httpx.HTTPTransport`` does over a pool of its own making, which takes no network backend)."""

    def __init__(self, pool: httpcore.ConnectionPool) -> None:
        self._pool = pool

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors():
            answer = self._pool.handle_request(core)
        return httpx.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=_BodyStream(answer.stream),
            extensions=answer.extensions,
        )

    def close(self) -> None:
        self._pool.close()


def request(
    method: str,
    url: str,
    *,
    timeout: float,
    max_bytes: int | None = None,
    http_client: httpx.Client | None = None,
    **kwargs,
) -> httpx.Response:
    """``http_client.request(method, url, **kwargs)`` (default: ``client()``) with ``timeout`` as the deadline of
    the whole call, its body read whole into the answer but never more than ``max_bytes`` (default
    ``HUB_HTTP_MAX_RESPONSE_BYTES``): past that it raises ``ResponseTooLarge`` having read no more. Raises httpx's
    ``TransportError``s (a ``TimeoutException`` when the deadline passed)."""
    cap = settings.HUB_HTTP_MAX_RESPONSE_BYTES if max_bytes is None else max_bytes
    one = http_client or client()
    with deadline(timeout), one.stream(method, url, timeout=timeout, **kwargs) as response:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise ResponseTooLarge(f"the answer's body is {int(declared)} bytes, over the cap of {cap} bytes")
        decoder = _decoder(response.headers.get("content-encoding", ""))
        chunks = []
        size = 0
        # Decoded bytes are counted, decoded at most one byte past the cap at a time: the clients ask for no
        # compression, but a server may compress all the same, and a small answer may decode to gigabytes.
        for raw in response.iter_raw():
            try:
                chunk = raw if decoder is None else decoder.decompress(raw, cap + 1 - size)
            except zlib.error as exc:
                raise AnswerRefused(f"the answer's body does not decode: {exc}") from None
            size += len(chunk)
            if size > cap:
                raise ResponseTooLarge(f"the answer's body is over the cap of {cap} bytes; the rest was not read")
            chunks.append(chunk)
    headers = response.headers.copy()
    for decoded in ("content-encoding", "content-length"):
        headers.pop(decoded, None)
    return httpx.Response(
        status_code=response.status_code,
        headers=headers,
        content=b"".join(chunks),
        request=response.request,
        extensions=response.extensions,
    )


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
            transport=DeadlineTransport(_new_pool(context)),
            # Uncompressed answers: what is read is what is capped (a small compressed answer may decode to gigabytes).
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            follow_redirects=False,
            trust_env=False,
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
    return _shared(_pools, tls, lambda: _new_pool(context))


def _new_pool(context: ssl.SSLContext) -> httpcore.ConnectionPool:
    return httpcore.ConnectionPool(
        ssl_context=context,
        max_connections=settings.HUB_HTTP_MAX_CONNECTIONS,
        max_keepalive_connections=_keepalive_connections(),
        keepalive_expiry=KEEPALIVE_EXPIRY,
        network_backend=DeadlineBackend(),
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
