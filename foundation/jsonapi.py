"""The one JSON envelope of every HTTP API of the hub (``/api/unified/*``, ``/api/coord/*``, ``/api/feishu/*``,
the bridge status endpoint).

Success: the endpoint's own object. Failure: ``{"success": false, "error": "<reason for a person>"}`` with a 4xx
or 5xx status, plus any headers the failure needs (``Retry-After``, ``WWW-Authenticate``). Clients read the status
first and ``error`` for the reason.

Every JSON a client or Feishu sends over HTTP is read with ``json_loads`` (``json_body`` for request bodies): strict
UTF-8, no ``NaN``/``Infinity`` (nor numbers that overflow to them), no lone UTF-16 surrogates nor NUL characters
(the database refuses to store them) and at most ``MAX_DEPTH`` levels of nesting, so hostile input is a 400 with a
reason, never a 500.
"""

from __future__ import annotations

import json
import math
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse

# Deeper than any payload the hub takes (a Feishu card nests about 10 levels); far below the recursion limit.
MAX_DEPTH = 64


# JSON as the hub writes it on the wire and measures it (frames, queued bytes, sizes): compact, UTF-8 text as is.
# Without the circular-reference check (a dictionary of every container on the way): what it encodes was parsed
# from JSON or built by the hub, and cannot refer to itself.
compact_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode


class BadJson(ValueError):
    """A request body that is not the JSON object an endpoint needs; ``str()`` is the reason."""


def json_response(data: dict, status: int = 200, **headers: str) -> JsonResponse:
    """``data`` as JSON (UTF-8, not ASCII-escaped); ``Retry_After="3"`` sets the header ``Retry-After: 3``."""
    response = JsonResponse(data, status=status, json_dumps_params={"ensure_ascii": False})
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def json_error(status: int, reason: str, **headers: str) -> JsonResponse:
    """The failure envelope ``{"success": false, "error": reason}``."""
    return json_response({"success": False, "error": reason}, status=status, **headers)


def json_body(request: HttpRequest, *, empty: dict | None = None) -> dict:
    """The request body as a JSON object; ``empty`` (when given) for an empty body. Raises ``BadJson``."""
    body = request_bytes(request)
    if not body and empty is not None:
        return dict(empty)
    data = json_loads(body or b"null")
    if not isinstance(data, dict):
        raise BadJson("the body must be a JSON object")
    return data


def request_bytes(request: HttpRequest) -> bytes:
    """The raw request body; ``BadJson`` when it is over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (Django would answer
    its own HTML 400 page instead of the envelope)."""
    try:
        return request.body
    except RequestDataTooBig:
        raise BadJson(f"the body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes") from None


def _refuse_constant(name: str) -> float:
    raise BadJson(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise BadJson(f"{text[:40]} is too large a number")
    return number


def json_loads(raw: bytes | str, *, max_depth: int = MAX_DEPTH, what: str = "the body") -> Any:
    """The JSON value of ``raw`` (UTF-8 bytes or text), held to the rules in this module's docstring.

    Raises ``BadJson`` whose ``str()`` says what is wrong with ``what`` (for a 400)."""
    try:
        return _loads(raw, max_depth)
    except BadJson as exc:
        raise BadJson(f"{what} is not valid JSON: {exc}") from None


def _loads(raw: bytes | str, max_depth: int) -> Any:
    if isinstance(raw, bytes | bytearray | memoryview):
        try:
            # Strict UTF-8: json.loads would take bytes with 'surrogatepass' and let encoded surrogates in.
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadJson(f"not UTF-8 at byte {exc.start}") from None
    else:
        text = raw
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)
    except RecursionError:
        raise BadJson(f"nested deeper than {max_depth} levels") from None
    except BadJson:
        raise
    except ValueError as exc:
        raise BadJson(str(exc)) from None
    # Only a \u escape can put a lone surrogate or a NUL in a string once the text is strict UTF-8 (json refuses
    # raw control characters); only enough brackets can nest.
    nested = text.count("[") + text.count("{") > max_depth
    problem = _walk_problem(value, max_depth=max_depth if nested else None, strings="\\u" in text, floats=False)
    if problem:
        raise BadJson(problem)
    return value


def json_value_problem(value: Any, *, max_depth: int = MAX_DEPTH) -> str | None:
    """Why an already-parsed value (a bridge frame's field, a Python caller's metadata) cannot be stored as JSON
    (too deep, NaN or Infinity, a lone surrogate, a NUL character), or None."""
    return _walk_problem(value, max_depth=max_depth, strings=True, floats=True)


def _walk_problem(value: Any, *, max_depth: int | None, strings: bool, floats: bool) -> str | None:
    """The first rule ``value`` breaks, walking it without recursion (it may be deep), or None."""
    if max_depth is None and not strings and not floats:
        return None
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if max_depth is not None and depth >= max_depth:
                return f"nested deeper than {max_depth} levels"
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
        elif strings and isinstance(item, str):
            if "\x00" in item:
                return "a string holds a NUL character (\\u0000), which the database cannot store"
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return "a string holds a lone UTF-16 surrogate (\\ud800-\\udfff)"
        elif floats and isinstance(item, float) and not math.isfinite(item):
            return "NaN and Infinity are not numbers JSON allows"
    return None
