from __future__ import annotations

from functools import cache

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache

from foundation.jsonapi import json_response

# A health check answers within this even when Redis hangs (a load balancer's probe has its own deadline).
REDIS_TIMEOUT = 1.0


@cache
def _redis(url: str) -> redis.Redis:
    """One client (and connection pool) per URL for the process: a probe costs one PING, not a connect."""
    return redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT)


def _problems() -> dict[str, str]:
    """What is down, by name (``database``, ``redis``), with the error; empty when everything answers."""
    problems = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        problems["database"] = str(exc) or type(exc).__name__
    if settings.REDIS_URL:
        try:
            _redis(settings.REDIS_URL).ping()
        except redis.RedisError as exc:
            problems["redis"] = str(exc) or type(exc).__name__
    return problems


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """200 ``{"status": "ok", ...}`` when the database and (when configured) Redis answer; otherwise 503 with
    the failure envelope naming what is down. For load balancers and the runhub tests: one ``SELECT 1`` and
    one ``PING``."""
    problems = _problems()
    checks = {"database": "ok", "redis": "ok" if settings.REDIS_URL else "not configured"} | problems
    if problems:
        reason = "; ".join(f"{name} is down: {error}" for name, error in problems.items())
        return json_response(
            {"success": False, "error": reason, "status": "unavailable", "down": sorted(problems), "checks": checks},
            status=503,
        )
    return json_response({"status": "ok", "checks": checks})
