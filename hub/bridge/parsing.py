"""Reading one bridge frame from a text message, safely: whatever a client sends, the answer is a dict or a
``FrameError`` saying what is wrong, never another exception.

Python's JSON decoder recurses once per nesting level: ``"[" * 100000`` raises ``RecursionError`` deep in the
decoder, and a structure a few hundred levels deep makes every later walk of it (encoding it again, storing
it) expensive or fail. So the nesting depth is measured before decoding, with C-speed string operations (the
brackets outside strings, counted), and only when the frame holds more brackets than the limit at all. Lone
UTF-16 surrogates (``"\\ud800"``), which JSON allows and UTF-8 cannot carry, are refused after decoding: they
would fail later, when the frame is written to another socket or stored.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate

from foundation.jsonapi import MAX_DEPTH  # deeper than any frame of the protocol
from foundation.sockets import FrameError

_loads = json.loads
_DELTA = {"[": 1, "{": 1, "]": -1, "}": -1}
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def nesting_depth(text: str, limit: int = MAX_DEPTH) -> int:
    """How deep arrays and objects nest in the JSON ``text`` (brackets inside strings do not count); a text with
    at most ``limit`` brackets in all is not measured (its depth is at most ``limit``, and 0 is returned)."""
    if text.count("[") + text.count("{") <= limit:
        return 0
    # Escaped backslashes first, then escaped quotes: what is left of '"' delimits strings.
    unescaped = text.replace("\\\\", "").replace('\\"', "")
    outside = "".join(unescaped.split('"')[::2])
    brackets = _NOT_BRACKET.sub("", outside)
    return max(accumulate(map(_DELTA.__getitem__, brackets)), default=0)


def _has_lone_surrogate(value: object) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def frame_from_text(text: str, limit: int = MAX_DEPTH) -> dict:
    """The frame (a JSON object) in ``text``; ``FrameError`` with the reason for anything else."""
    depth = nesting_depth(text, limit)
    if depth > limit:
        raise FrameError(f"frame nested too deeply: {depth} levels, at most {limit}")
    try:
        data = _loads(text)
    except ValueError as exc:
        raise FrameError(f"malformed JSON: {exc}") from None
    except RecursionError:  # cannot happen below the limit; kept so that nothing else can escape
        raise FrameError(f"frame nested too deeply: at most {limit} levels") from None
    if type(data) is not dict:
        raise FrameError("a frame must be a JSON object")
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(data):
        raise FrameError("a frame's text must be valid Unicode: it contains a lone surrogate (\\ud800-\\udfff)")
    return data
