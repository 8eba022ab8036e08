"""System checks for configuration mistakes that would otherwise surface later, as a silent misbehaviour.

Django runs them before management commands (``runhub``, ``migrate``, the workers) and on ``manage.py check``;
the database check runs where Django passes databases (``migrate``, ``check --database default``, the test
runner).

| id | what |
| --- | --- |
| ``hub.W001`` | ``HUB_RETRY_FIRST_DELAY`` is longer than ``HUB_RETRY_MAX_DELAY``: every retry waits the cap |
| ``hub.W002`` | ``HUB_ALERT_MEMBER`` names no member: alerts to it are lost |
| ``hub.W003`` | only one of ``FEISHU_APP_ID`` / ``FEISHU_APP_SECRET`` is set: the app counts as not configured |
| ``hub.W004`` | PostgreSQL with persistent connections (``CONN_MAX_AGE`` > 0) under ASGI: connections leak |
| ``hub.W005`` | ``REDIS_URL`` without ``PROMETHEUS_MULTIPROC_DIR``: ``/metrics`` shows one process's counters |
| ``hub.W006`` | ``HUB_NOTIFY_CA_FILE`` holds no usable certificate: every notify over HTTPS fails |
| ``hub.W007`` | ``HUB_LINGMESSAGE_DIR`` is not a directory the hub can write: discussions miss the mailbox |
| ``hub.W008`` | ``HUB_LINGMESSAGE_DIR`` without ``HUB_LINGMESSAGE_WRITER``: no post in the mailbox is delivered |
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Tags, register
from django.core.checks import Warning as CheckWarning
from django.db import DatabaseError

TAG = "hub"


class ChecksConfig(AppConfig):
    """Listed in ``INSTALLED_APPS`` so Django imports this module, whose decorators register the checks."""

    name = "hub.checks"
    label = "hub_checks"
    verbose_name = "Configuration checks"


@register(TAG)
def check_retry_delays(app_configs=None, **kwargs) -> list[CheckMessage]:
    first, cap = settings.HUB_RETRY_FIRST_DELAY, settings.HUB_RETRY_MAX_DELAY
    if first <= cap:
        return []
    return [
        CheckWarning(
            f"HUB_RETRY_FIRST_DELAY ({first} s) is longer than HUB_RETRY_MAX_DELAY ({cap} s).",
            hint="Every retry then waits HUB_RETRY_MAX_DELAY and the back-off never grows; "
            "set the first delay at or below the cap (the defaults are 60 and 600).",
            id="hub.W001",
        )
    ]


@register(TAG, Tags.database)
def check_alert_member(app_configs=None, databases=None, **kwargs) -> list[CheckMessage]:
    member_id = settings.HUB_ALERT_MEMBER
    if not databases or not member_id:
        return []
    from members.models import Member  # this module is imported while the apps load, before models are ready

    try:
        exists = Member.objects.filter(member_id=member_id).exists()
    except DatabaseError:  # not migrated yet (``migrate`` runs this check before migrating)
        return []
    if exists:
        return []
    return [
        CheckWarning(
            f"HUB_ALERT_MEMBER is {member_id!r}, but there is no such member.",
            hint="Alerts to it are lost: add the member (manage.py member add) or fix the name.",
            id="hub.W002",
        )
    ]


@register(TAG)
def check_feishu_app(app_configs=None, **kwargs) -> list[CheckMessage]:
    app_id, secret = settings.FEISHU_APP_ID, settings.FEISHU_APP_SECRET
    if bool(app_id) == bool(secret):
        return []
    present, missing = ("FEISHU_APP_ID", "FEISHU_APP_SECRET") if app_id else ("FEISHU_APP_SECRET", "FEISHU_APP_ID")
    return [
        CheckWarning(
            f"{present} is set without {missing}.",
            hint="The hub's Feishu app counts as not configured: runpoller does not run and claims are not "
            f"mirrored on Feishu. Set {missing} too (or unset {present}).",
            id="hub.W003",
        )
    ]


def persistent_postgresql(databases: dict[str, dict]) -> list[str]:
    """The aliases of the PostgreSQL databases among ``databases`` (``settings.DATABASES``' shape) that keep
    connections open between requests (``CONN_MAX_AGE`` None or above 0)."""
    return [
        alias
        for alias, database in databases.items()
        if "postgresql" in database.get("ENGINE", "")
        and (database.get("CONN_MAX_AGE", 0) is None or database.get("CONN_MAX_AGE", 0) > 0)
    ]


@register(TAG)
def check_persistent_connections(app_configs=None, **kwargs) -> list[CheckMessage]:
    if not settings.ASGI_APPLICATION:
        return []
    return [
        CheckWarning(
            f"The PostgreSQL database {alias!r} keeps connections open "
            f"(CONN_MAX_AGE={settings.DATABASES[alias].get('CONN_MAX_AGE')}) under ASGI.",
            hint="Under ASGI every worker thread keeps its own connection and nothing closes it, so connections "
            "pile up until PostgreSQL refuses new ones. Set HUB_DB_CONN_MAX_AGE=0 (the default for PostgreSQL).",
            id="hub.W004",
        )
        for alias in persistent_postgresql(settings.DATABASES)
    ]


@register(TAG)
def check_metrics_multiprocess(
    app_configs=None, environ: Mapping[str, str] = os.environ, **kwargs
) -> list[CheckMessage]:
    # The environment, not settings: runhub sets the directory for its children after the settings load.
    if not settings.REDIS_URL or environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return []
    return [
        CheckWarning(
            "REDIS_URL is set (several hub processes share the work) but PROMETHEUS_MULTIPROC_DIR is not.",
            hint="Each process then counts alone and /metrics shows only the counters of the process that "
            "answers. Point PROMETHEUS_MULTIPROC_DIR at a directory every hub process shares, emptied at "
            "start (runhub does this for its children).",
            id="hub.W005",
        )
    ]


@register(TAG)
def check_notify_ca_file(app_configs=None, **kwargs) -> list[CheckMessage]:
    path = settings.HUB_NOTIFY_CA_FILE
    if not path:
        return []
    import ssl

    from foundation.http import load_ca

    try:
        load_ca(ssl.create_default_context(), str(path))
    except ValueError as exc:
        return [
            CheckWarning(
                f"HUB_NOTIFY_CA_FILE: {exc}.",
                hint="Every notify to an HTTPS endpoint then fails to connect. Point it at a PEM file of CA "
                "certificates (or a member's self-signed certificate), or unset it.",
                id="hub.W006",
            )
        ]
    return []


@register(TAG)
def check_mailbox_dir(app_configs=None, **kwargs) -> list[CheckMessage]:
    root = settings.HUB_LINGMESSAGE_DIR
    if not root:
        return []
    existing = next((p for p in (root, *root.parents) if p.exists()), None)
    if existing is not None and existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
        return []
    return [
        CheckWarning(
            f"HUB_LINGMESSAGE_DIR ({root}) is not a directory the hub can create or write.",
            hint="Accepted discussions are then not written into the mailbox (receivers answer 404 for the "
            "notified id) and posts are not picked up. Run the hub as the user that owns the mailbox "
            "(LingMessage writes it 0700).",
            id="hub.W007",
        )
    ]


@register(TAG)
def check_mailbox_writer(app_configs=None, **kwargs) -> list[CheckMessage]:
    if not settings.HUB_LINGMESSAGE_DIR or settings.HUB_LINGMESSAGE_WRITER:
        return []
    return [
        CheckWarning(
            "HUB_LINGMESSAGE_DIR is set without HUB_LINGMESSAGE_WRITER: nothing posted into the mailbox is delivered.",
            hint="Set HUB_LINGMESSAGE_WRITER to the member whose tools post into the mailbox; the pickup delivers "
            "its posts, under its send policy, and skips posts as anyone else.",
            id="hub.W008",
        )
    ]
