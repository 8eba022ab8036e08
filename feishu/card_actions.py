"""Clicks on cards back to the member that sent the card, and its answer back to Feishu in time.

A click (``feishu.cards.CardClick``) becomes a ``card_action`` message from the person who clicked to the
member that sent the card (the hub message the card's reference names), through the router like any message:
over its bridge socket, LingMessage endpoint… The member answers with the ``card_update`` frame (or
``POST /api/feishu/card_update``): ``{"message_id": <the card_action message>, "card"?: {...}, "toast"?: "…"}``.
``card_click_answer`` waits for that answer up to ``HUB_CARD_CALLBACK_WAIT`` seconds (Feishu gives the whole
callback 3 s) and answers Feishu with the member's card and toast, or the default toast
(``HUB_CARD_DEFAULT_TOAST``) when none came in time, the member is offline (the click still waits for it in
the queue) or the card is not one the hub sent. A late answer is kept on the ``CardAction`` row (admin) but
changes nothing on Feishu.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from channels.db import DatabaseSyncToAsync
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from delivery.formats import body_problem
from delivery.services import message_send
from feishu.cards import CardClick, callback_answer, is_template, stamp
from feishu.models import CardAction
from foundation import metrics
from members.models import Channel, Member
from offline_queue.models import Message, new_message_id

POLL_SECONDS = 0.05
ANSWERED_ALREADY = "was answered already"
TOAST_TYPES = ("info", "success", "error", "warning")


def card_action_receive(*, click: CardClick) -> CardAction:
    """Record ``click`` and hand it to the member that sent the card. Returns its ``CardAction``: ``waiting``
    when the message reached a live channel of the member (its answer is awaited), ``queued`` when it waits
    for the member in the queue, ``unknown`` for a card the hub did not send; a retried callback (the same
    key) gets the first one's row."""
    original = Message.objects.filter(message_id=click.message_id).first() if click.message_id else None
    sender = Member.objects.filter(member_id=original.sender_id, enabled=True).first() if original else None
    fields = {
        "operator": click.operator,
        "action": click.action,
        "feishu_message_id": click.feishu_message_id[:100],
        "chat_id": click.chat_id[:100],
        "bound_to": click.bound_to[:120],
        "original_message_id": original.message_id if original else (click.message_id or ""),
        "card_sender": sender.member_id if sender else "",
        "message_id": new_message_id() if sender else "",
        "state": CardAction.State.WAITING if sender else CardAction.State.UNKNOWN,
    }
    try:
        with transaction.atomic():
            action = CardAction.objects.create(key=click.key, **fields)
    except IntegrityError:
        return CardAction.objects.get(key=click.key)
    if sender is None:
        return action
    operator = {**click.operator, "member_id": _operator_member(click.operator.get("open_id", ""))}
    result = message_send(
        sender_id=operator["member_id"] or click.operator.get("open_id") or "feishu",
        recipient_id=sender.member_id,
        topic=original.topic,
        message_type=Message.Type.NOTIFICATION,
        thread_id=original.thread_id or original.message_id,
        reply_to=original.message_id,
        message_id=action.message_id,
        idempotency_key=f"feishu-{click.key}",
        source=Message.Source.FEISHU,
        metadata={"source": "feishu", "chat_id": click.chat_id, "feishu_message_id": click.feishu_message_id},
        priority=original.priority,
        message_format=Message.Format.CARD_ACTION,
        body={
            "action": click.action,
            "operator": operator,
            "original_message_id": original.message_id,
            "feishu_message_id": click.feishu_message_id,
            "chat_id": click.chat_id,
            "answer_by": (timezone.now() + timedelta(seconds=settings.HUB_CARD_CALLBACK_WAIT)).isoformat(),
        },
        route=False,
    )
    if not result.success:
        action.state = CardAction.State.QUEUED
        CardAction.objects.filter(pk=action.pk).update(state=action.state)
    return action


def _operator_member(open_id: str) -> str | None:
    """The member who is this Feishu person (a ``feishu_bot`` channel with the open_id and no app_id)."""
    if not open_id:
        return None
    channel = (
        Channel.objects.filter(kind=Channel.Kind.FEISHU_BOT, address=open_id, app_id="", member__enabled=True)
        .select_related("member")
        .first()
    )
    return channel.member.member_id if channel else None


def toast_problem(toast: object) -> str | None:
    """Why ``toast`` (a string, or ``{"type", "content"}``) cannot be shown, or None."""
    if toast is None or isinstance(toast, str):
        return None
    if not isinstance(toast, dict) or toast.get("type", "info") not in TOAST_TYPES:
        return f"toast must be a string or {{type: {'|'.join(TOAST_TYPES)}, content}}"
    if not isinstance(toast.get("content", ""), str):
        return "toast.content must be a string"
    return None


def answer_card_problem(card: object) -> str | None:
    """Why ``card`` cannot be shown in place of the clicked card, or None. A card is a raw card (``elements``,
    or ``body.elements`` for schema 2.0), Feishu's ``{"type": "raw", "data": <card>}``, or a template
    ``{"type": "template", "data": {"template_id", "template_variables"?, "template_version_name"?}}``."""
    if isinstance(card, dict) and card.get("type") == "raw":
        card = card.get("data")
        if not isinstance(card, dict):
            return "card: a raw card needs data, the card as an object"
    if not isinstance(card, dict):
        return "card must be an object: a card, {type: raw, data: <card>} or {type: template, data: {template_id}}"
    if is_template(card):
        data = card.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("template_id"), str) or not data["template_id"]:
            return "card: a template card needs data.template_id, a string"
        if not isinstance(data.get("template_variables", {}), dict):
            return "card: data.template_variables of a template card must be an object"
        if not isinstance(data.get("template_version_name", ""), str):
            return "card: data.template_version_name of a template card must be a string"
        return body_problem(Message.Format.CARD, card)  # Feishu's size limit
    if "type" in card:
        return f"card: type {card['type']!r} is neither raw nor template"
    return body_problem(Message.Format.CARD, card)


def _shown_card(card: dict, action: CardAction) -> dict:
    """What the answer keeps of a valid card: a template as it is (its buttons are the template's), a raw card
    stamped like the original, so its buttons reach the member again."""
    if is_template(card):
        return {"type": "template", "data": card["data"]}
    raw = card["data"] if card.get("type") == "raw" else card
    return stamp(raw, action.original_message_id, action.bound_to)


def card_action_answer(*, member: Member, message_id: str, card: object = None, toast: object = None) -> str | None:
    """Keep ``member``'s answer to the click it was told of in ``message_id``: the updated ``card`` (raw, stamped
    like the original so its buttons reach the member again, or a template: ``answer_card_problem``) and/or a
    ``toast``. Returns why it was refused (unknown message, not the member's card, a card that is neither raw
    nor template, a bad toast, answered already), or None: a refused answer changes nothing, and without a valid
    one in time Feishu gets the default toast."""
    action = CardAction.objects.filter(message_id=message_id).first() if message_id else None
    if action is None:
        return f"no card click was told in message {message_id!r}"
    if action.card_sender != member.member_id:
        return f"message {message_id!r} told {action.card_sender!r} of a click, not {member.member_id!r}"
    if card is None and toast is None:
        return "a card_update needs a card or a toast"
    problem = (answer_card_problem(card) if card is not None else None) or toast_problem(toast)
    if problem:
        return problem
    answer = {}
    if card is not None:
        answer["card"] = _shown_card(card, action)
    if toast is not None:
        answer["toast"] = {"type": "info", "content": toast} if isinstance(toast, str) else toast
    if not CardAction.objects.filter(pk=action.pk, answer__isnull=True).update(
        answer=answer, answered_at=timezone.now()
    ):
        return f"the click told in {message_id!r} {ANSWERED_ALREADY}"
    CardAction.objects.filter(pk=action.pk, state=CardAction.State.WAITING).update(state=CardAction.State.ANSWERED)
    return None


def _answer_of(pk: int) -> dict | None:
    return CardAction.objects.filter(pk=pk).values_list("answer", flat=True).first()


def _time_out(pk: int) -> dict | None:
    """No answer in time: the hub answers. Returns an answer that came at the last moment, if any."""
    CardAction.objects.filter(pk=pk, state=CardAction.State.WAITING).update(state=CardAction.State.DEFAULT)
    return _answer_of(pk)


def _in_thread(function):
    """``function`` for the event loop, on a pool thread (a slow database must not hold the loop's other
    work), handing the thread's connection back after each call."""

    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        finally:
            connection.close()

    return DatabaseSyncToAsync(call, thread_sensitive=False)


_receive = _in_thread(card_action_receive)
_answer = _in_thread(_answer_of)
_timed_out = _in_thread(_time_out)


async def card_click_answer(click: CardClick) -> dict:
    """Hand ``click`` to the card's sender and return what Feishu should show (``callback_answer``): the
    member's answer if it comes within ``HUB_CARD_CALLBACK_WAIT`` seconds, else the default toast."""
    deadline = time.monotonic() + settings.HUB_CARD_CALLBACK_WAIT
    action = await _receive(click=click)
    answer = action.answer
    outcome = action.state
    if answer is None and action.state == CardAction.State.WAITING:
        while answer is None and time.monotonic() < deadline:
            await asyncio.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
            answer = await _answer(action.pk)
        if answer is None:
            answer = await _timed_out(action.pk)
        outcome = CardAction.State.ANSWERED if answer is not None else CardAction.State.DEFAULT
    metrics.CARD_ACTIONS.labels(outcome=outcome).inc()
    answer = answer or {}
    toast = answer.get("toast")
    if toast is None and "card" not in answer:
        toast = {"type": "info", "content": settings.HUB_CARD_DEFAULT_TOAST}
    return callback_answer(click, card=answer.get("card"), toast=toast)
