"""Apprise URLs (``Channel.Kind.APPRISE``): checked when a channel is saved, shown with their secrets masked.

An Apprise URL names a chat platform and carries its credentials (``tgram://<bot token>/<chat id>``,
``slack://…``, ``discord://…``, ``json://host/path``…). Both helpers use Apprise's public API: a URL is valid when
``Apprise.instantiate`` builds a service from it, and the masked form is that service's ``url(privacy=True)``.
"""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=256)
def _service(url: str):
    # Apprise and its plugins are imported when a URL is first checked or shown, not by every hub process at start
    # (about 20 MB each).
    import apprise

    return apprise.Apprise.instantiate(url) if url.strip() else None


def apprise_problem(url: str) -> str | None:
    """Why ``url`` is not an Apprise URL the hub can send to (a form's error), or None."""
    if not url.strip():
        return "an Apprise URL is required, e.g. tgram://<bot token>/<chat id> or json://host/path"
    if "://" not in url:
        return f"not an Apprise URL (no scheme://): {apprise_private(url)}"
    if _service(url) is None:
        scheme = url.split("://", 1)[0]
        return (
            f"Apprise cannot use this {scheme}:// URL: an unknown service, or a token, id or host that does not "
            "fit it (see https://appriseit.com/services/)"
        )
    return None


def apprise_private(url: str) -> str:
    """``url`` with its tokens and passwords masked, as Apprise prints it (``privacy=True``); a URL Apprise cannot
    read is masked whole but for its scheme."""
    service = _service(url) if "://" in url else None
    if service is None:
        scheme, sep, _ = url.partition("://")
        return f"{scheme}://****" if sep else "****"
    return service.url(privacy=True)


def apprise_service_name(url: str) -> str:
    """The platform a valid URL reaches (``Telegram``, ``JSON``…); ``""`` when Apprise cannot read it."""
    service = _service(url) if "://" in url else None
    return str(service.service_name) if service is not None else ""
