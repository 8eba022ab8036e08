"""The hub's HTTP answers, read with a bound: a body over the limit (declared, or as it arrives) is not read
further and ends the call with ``ApiError``, so that a broken or hostile server (or whatever stands in its
place) cannot fill the member's memory with one answer."""

from __future__ import annotations

import httpx

from linghub.errors import ApiError

MAX_RESPONSE_BYTES = 16 * 1024 * 1024
# What describes the body as it came over the wire; the answer handed on carries it decoded and whole.
_WIRE_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def _too_large(response: httpx.Response, limit: int) -> ApiError:
    return ApiError(
        response.status_code, f"the answer is larger than {limit} bytes (max_response_bytes); not read further"
    )


async def send_bounded(http: httpx.AsyncClient, request: httpx.Request, limit: int) -> httpx.Response:
    """Send ``request`` and read the answer's body, at most ``limit`` bytes once decoded; raises ``ApiError``
    beyond (the connection is closed without reading the rest) and httpx's errors as ``send`` does."""
    response = await http.send(request, stream=True)
    try:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit and "Content-Encoding" not in response.headers:
            raise _too_large(response, limit)
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > limit:
                raise _too_large(response, limit)
    finally:
        await response.aclose()
    headers = [(name, value) for name, value in response.headers.multi_items() if name.lower() not in _WIRE_HEADERS]
    return httpx.Response(
        response.status_code, headers=headers, content=bytes(body), request=request, extensions=response.extensions
    )
