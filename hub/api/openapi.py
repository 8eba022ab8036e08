"""The OpenAPI description of /api/unified/*, served at /api/openapi.json (a test checks it against the views)."""

from __future__ import annotations

from delivery.formats import FORMATS
from delivery.online import public_channel
from members.models import Channel
from offline_queue.models import Message

# The channel names the API reports, one per channel kind (the Feishu kinds as one).
CHANNELS = list(dict.fromkeys(public_channel(kind) for kind in Channel.Kind.values))

STRING = {"type": "string"}
NULLABLE_STRING = {"type": ["string", "null"]}


def _error(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _ok(description: str, ref: str, **extra: dict) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
        **extra,
    }


AUTH_ERRORS = {"401": _error("No token, or a token no enabled member holds.")}

SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["success", "error"],
        "properties": {"success": {"const": False}, "error": {"type": "string"}},
    },
    "SendRequest": {
        "type": "object",
        "required": ["recipient_id"],
        "properties": {
            "sender_id": {"type": "string", "description": "Must be the token's member; defaults to it."},
            "recipient_id": STRING,
            "topic": {"type": "string", "maxLength": 500},
            "content": STRING,
            "message_type": {"enum": list(Message.Type.values), "default": "discussion"},
            "thread_id": {"type": "string", "maxLength": 100},
            "reply_to": {"type": "string", "maxLength": 100},
            "message_id": {
                "type": "string",
                "pattern": "^[A-Za-z0-9_.:-]{1,100}$",
                "description": "Client-chosen id; a retry with the same id returns the first answer.",
            },
            "metadata": {"type": "object"},
            "priority": {
                "type": "integer",
                "minimum": 1,
                "maximum": 5,
                "description": "1 (low) to 5 (urgent); defaults to the sender's priority, which is also the highest "
                "it may give.",
            },
            "format": {
                "enum": list(FORMATS),
                "default": "text",
                "description": "text, or a structured body under the format's name (post or card); content then "
                "defaults to its plain-text rendering.",
            },
            "post": {
                "type": "object",
                "description": "Feishu rich text: {zh_cn: {title, content: [[{tag: text|a|at|img|…, …}]]}} "
                "(a bare {title, content} is zh_cn). At most 30 KB.",
            },
            "card": {
                "type": "object",
                "description": "A Feishu interactive card (elements, or body.elements for schema 2.0). At most 30 KB. "
                "Clicks on its buttons come back to the sender as card_action messages.",
            },
        },
    },
    "Copy": {
        "type": "object",
        "required": ["recipient_id", "rule_id", "message_id", "channel", "success"],
        "properties": {
            "recipient_id": STRING,
            "rule_id": {"type": "integer"},
            "message_id": NULLABLE_STRING,
            "channel": NULLABLE_STRING,
            "success": {"type": "boolean"},
            "status": NULLABLE_STRING,
            "error": STRING,
        },
    },
    "RoutedMessage": {
        "type": "object",
        "required": ["recipient_id", "mode", "rule_id", "rule", "channel_kind", "channels"],
        "properties": {
            "recipient_id": STRING,
            "mode": {"enum": ["original", "instead", "also"]},
            "rule_id": {"type": ["integer", "null"]},
            "rule": STRING,
            "channel_kind": NULLABLE_STRING,
            "channels": {
                "type": "array",
                "description": "The recipient's usable channels in the order the router tries them.",
                "items": {
                    "type": "object",
                    "required": ["kind", "state"],
                    "properties": {"kind": STRING, "state": {"enum": ["up", "down", "unknown"]}},
                },
            },
        },
    },
    "RoutePreview": {
        "type": "object",
        "required": ["success", "messages", "policy"],
        "properties": {
            "success": {"const": True},
            "messages": {"type": "array", "items": {"$ref": "#/components/schemas/RoutedMessage"}},
            "policy": {
                "type": ["object", "null"],
                "description": "The sender's policy rule the send would break (type, format, priority), or null.",
                "properties": {"rule": STRING, "status": {"type": "integer"}, "error": STRING},
            },
        },
    },
    "SendResult": {
        "type": "object",
        "required": ["success", "message_id", "channel", "response_time_ms"],
        "properties": {
            "success": {"type": "boolean", "description": "True when a channel took the message."},
            "message_id": STRING,
            "channel": {"enum": [*CHANNELS, "queue"]},
            "response_time_ms": {"type": "number"},
            "status": {"enum": list(Message.Status.values), "description": "The message's status now."},
            "error": {"type": "string", "description": "Why it is queued or failed."},
            "copies": {
                "type": "array",
                "description": "The copies route rules made, each its own message.",
                "items": {"$ref": "#/components/schemas/Copy"},
            },
        },
    },
    "MemberStatus": {
        "type": "object",
        "required": ["online", "state", "last_seen", "channel"],
        "properties": {
            "online": {"type": "boolean"},
            "state": {
                "enum": ["online", "refusing", "offline"],
                "description": "refusing: no channel is up, but an endpoint answers and refuses the hub (401/403/404).",
            },
            "reason": {"type": "string", "description": "How a refusing endpoint refused, e.g. 'HTTP 401'."},
            "last_seen": {**NULLABLE_STRING, "format": "date-time"},
            "channel": {"enum": [*CHANNELS, "none"]},
        },
    },
    "OnlineStatus": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/MemberStatus"}},
    "QueuedMessage": {
        "type": "object",
        "required": ["message_id", "sender_id", "topic", "content", "message_type", "timestamp", "retry_count"],
        "properties": {
            "message_id": STRING,
            "sender_id": STRING,
            "topic": STRING,
            "content": STRING,
            "message_type": {"enum": list(Message.Type.values)},
            "thread_id": STRING,
            "reply_to": STRING,
            "status": {"enum": [str(status) for status in Message.UNDELIVERED]},
            "timestamp": {"type": "string", "format": "date-time"},
            "retry_count": {"type": "integer"},
            "next_retry_at": {**NULLABLE_STRING, "format": "date-time"},
            "last_error": STRING,
            "format": {"enum": list(Message.Format.values)},
            "priority": {"type": "integer"},
        },
    },
    "TraceEvent": {
        "type": "object",
        "required": ["event", "at", "channel", "outcome", "detail", "latency_ms", "message_id"],
        "properties": {
            "event": {
                "enum": [
                    "accepted",
                    "rerouted",
                    "copy_of",
                    "attempt",
                    "copy",
                    "acknowledged",
                    "delivered",
                    "waiting_for_ack",
                    "retry_scheduled",
                    "expires",
                    "expired",
                    "failed",
                ],
                "description": "attempt: one transport call (channel, outcome, error in detail, latency_ms); copy: "
                "a copy a route rule made (message_id, its status as outcome); copy_of: this message is such a "
                "copy of message_id; acknowledged: delivered by the recipient's ack of an attempt that waited for "
                "it; retry_scheduled, waiting_for_ack and expires are still to come.",
            },
            "at": {**NULLABLE_STRING, "format": "date-time"},
            "channel": STRING,
            "outcome": STRING,
            "detail": STRING,
            "latency_ms": {"type": ["number", "null"]},
            "message_id": STRING,
        },
    },
    "Trace": {
        "type": "object",
        "required": ["success", "message_id", "sender_id", "recipient_id", "status", "events"],
        "properties": {
            "success": {"const": True},
            "message_id": STRING,
            "sender_id": STRING,
            "recipient_id": STRING,
            "message_type": {"enum": list(Message.Type.values)},
            "topic": STRING,
            "status": {"enum": list(Message.Status.values)},
            "delivered_via": STRING,
            "retry_count": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"},
            "delivered_at": {**NULLABLE_STRING, "format": "date-time"},
            "expires_at": {**NULLABLE_STRING, "format": "date-time"},
            "next_retry_at": {**NULLABLE_STRING, "format": "date-time"},
            "last_error": STRING,
            "original_id": NULLABLE_STRING,
            "copies": {"type": "array", "items": STRING, "description": "Shown to the sender only."},
            "events": {"type": "array", "items": {"$ref": "#/components/schemas/TraceEvent"}},
        },
    },
    "Queue": {
        "type": "object",
        "required": ["recipient_id", "queued_messages", "messages"],
        "properties": {
            "recipient_id": STRING,
            "queued_messages": {"type": "integer"},
            "messages": {"type": "array", "items": {"$ref": "#/components/schemas/QueuedMessage"}},
        },
    },
    "InboxMessage": {
        "type": "object",
        "required": ["message_id", "sender_id", "content", "message_type", "timestamp", "visible_again_at"],
        "properties": {
            "message_id": STRING,
            "sender_id": STRING,
            "topic": STRING,
            "content": STRING,
            "message_type": {"enum": list(Message.Type.values)},
            "thread_id": STRING,
            "reply_to": STRING,
            "format": {"enum": list(Message.Format.values)},
            "priority": {"type": "integer"},
            "post": {"type": "object"},
            "card": {"type": "object"},
            "card_action": {"type": "object"},
            "timestamp": NULLABLE_STRING,
            "source": STRING,
            "metadata": {"type": "object"},
            "sequence": {"type": "integer", "description": "The sender's sequence number."},
            "retry_count": {"type": "integer", "description": "Times it was delivered before without an ack."},
            "visible_again_at": {
                "type": ["string", "null"],
                "description": "Unless acknowledged by then, the message is taken again after this time.",
            },
        },
    },
    "Inbox": {
        "type": "object",
        "required": ["success", "member_id", "messages"],
        "properties": {
            "success": {"const": True},
            "member_id": STRING,
            "visibility_seconds": {"type": "integer"},
            "messages": {"type": "array", "items": {"$ref": "#/components/schemas/InboxMessage"}},
        },
    },
    "MessageState": {
        "type": "object",
        "required": ["message_id", "sender_id", "recipient_id", "status", "channel", "attempts"],
        "properties": {
            "message_id": STRING,
            "sender_id": STRING,
            "recipient_id": STRING,
            "topic": STRING,
            "message_type": {"enum": list(Message.Type.values)},
            "status": {"enum": list(Message.Status.values)},
            "channel": {
                "type": "string",
                "description": "The channel it was delivered (or handed) over; empty before.",
            },
            "timestamp": NULLABLE_STRING,
            "delivered_at": NULLABLE_STRING,
            "expires_at": NULLABLE_STRING,
            "retry_count": {"type": "integer"},
            "next_retry_at": NULLABLE_STRING,
            "last_error": STRING,
            "attempts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "channel": STRING,
                        "outcome": STRING,
                        "at": NULLABLE_STRING,
                        "latency_ms": {"type": "number"},
                        "error": STRING,
                    },
                },
            },
        },
    },
    "AckRequest": {
        "type": "object",
        "properties": {"message_ids": {"type": "array", "items": STRING}, "message_id": STRING},
    },
    "AckResult": {
        "type": "object",
        "required": ["success", "acknowledged", "already", "unknown"],
        "properties": {
            "success": {"const": True},
            "acknowledged": {"type": "array", "items": STRING},
            "already": {"type": "array", "items": STRING},
            "unknown": {"type": "array", "items": STRING},
        },
    },
}

PATHS = {
    "/api/unified/send": {
        "post": {
            "summary": "Send a message to a member over the channel that works",
            "operationId": "send",
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "maxLength": 200},
                    "description": "A retried request with the same key returns the first answer.",
                }
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SendRequest"}}},
            },
            "responses": {
                "200": _ok("Delivered, or written to the recipient's live bridge socket.", "SendResult"),
                "202": _ok("Accepted and queued: the recipient is offline or an earlier message waits.", "SendResult"),
                "400": _error("Bad input (the reason says which field)."),
                **AUTH_ERRORS,
                "403": _error(
                    "The token's member is not sender_id, or the sender's policy forbids the message type, format "
                    "or priority (the error names the rule)."
                ),
                "404": _error("Unknown or disabled recipient; nothing was queued."),
                "409": _error(
                    "The idempotency key or message_id was used for another request, or the sender's dedupe window "
                    "holds the same message (the error names the first)."
                ),
                "413": _error("Content, topic and metadata exceed one bridge frame (1 MiB less 8 KiB, as JSON)."),
                "429": _error("Send rate or daily cap exceeded; retry after the Retry-After header's seconds."),
                "507": _error(
                    "The recipient's queue is full (HUB_QUEUE_MAX_BYTES_PER_RECIPIENT bytes undelivered); nothing "
                    "was stored."
                ),
                "502": _ok(
                    "The recipient's endpoint refused the message for good (the reason is given).", "SendResult"
                ),
                "503": _error(
                    "A route rule sends the message to a member removed a moment ago; nothing was stored: send again."
                ),
            },
        }
    },
    "/api/unified/route": {
        "post": {
            "summary": "Where would this message go? The dry run of a send: nothing is sent",
            "operationId": "route",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SendRequest"}}},
            },
            "responses": {
                "200": _ok("The messages the send would make, and each recipient's channels.", "RoutePreview"),
                "400": _error("Bad input (the reason says which field)."),
                **AUTH_ERRORS,
                "403": _error("The token's member is not sender_id."),
                "404": _error("Unknown or disabled recipient."),
            },
        }
    },
    "/api/unified/online": {
        "get": {
            "summary": "Every member's status, computed now",
            "operationId": "online",
            "responses": {"200": _ok("member_id → status", "OnlineStatus"), **AUTH_ERRORS},
        }
    },
    "/api/unified/queue/{recipient_id}": {
        "get": {
            "summary": "Messages waiting for a member (the recipient sees all, others what they sent)",
            "operationId": "queue",
            "parameters": [
                {"name": "recipient_id", "in": "path", "required": True, "schema": STRING},
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                },
            ],
            "responses": {
                "200": _ok("The waiting messages, oldest first.", "Queue"),
                "400": _error("Bad limit."),
                **AUTH_ERRORS,
                "404": _error("Unknown recipient."),
            },
        }
    },
    "/api/unified/messages/{message_id}/trace": {
        "get": {
            "summary": "A message's whole path: accepted, every attempt, route-rule copies, ack, expiry",
            "operationId": "trace",
            "parameters": [{"name": "message_id", "in": "path", "required": True, "schema": STRING}],
            "responses": {
                "200": _ok("The message's steps in time order.", "Trace"),
                **AUTH_ERRORS,
                "404": _error("No such message, or the token's member is neither its sender nor its recipient."),
            },
        }
    },
    "/api/unified/messages/{message_id}": {
        "get": {
            "summary": "Where a message stands (for its sender and its recipient)",
            "operationId": "message",
            "parameters": [{"name": "message_id", "in": "path", "required": True, "schema": STRING}],
            "responses": {
                "200": _ok("Its status, channel, retries and delivery attempts (newest first).", "MessageState"),
                **AUTH_ERRORS,
                "404": _error("No such message sent by or to this member."),
            },
        }
    },
    "/api/unified/inbox": {
        "get": {
            "summary": "Take this member's waiting messages (the pull inbox), each sender's in order; long-poll",
            "operationId": "inbox",
            "parameters": [
                {
                    "name": "wait",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "number", "minimum": 0, "maximum": 60, "default": 0},
                    "description": "Seconds to wait for a message when none waits (at most HUB_INBOX_MAX_WAIT).",
                },
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
                },
            ],
            "responses": {
                "200": _ok(
                    "The messages taken (maybe none); each comes back after visibility_seconds unless acknowledged.",
                    "Inbox",
                ),
                "400": _error("Bad wait or limit."),
                **AUTH_ERRORS,
                "403": _error("The member's inbox channel, or the inbox channel kind, is switched off."),
            },
        }
    },
    "/api/unified/inbox/ack": {
        "post": {
            "summary": "Acknowledge messages taken from the inbox: they are delivered",
            "operationId": "inbox_ack",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AckRequest"}}},
            },
            "responses": {
                "200": _ok("Which ids were acknowledged now, before, or are not messages to this member.", "AckResult"),
                "400": _error("No message ids, or not a list of strings."),
                **AUTH_ERRORS,
            },
        }
    },
}


def document() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Ling Hub unified API", "version": "1"},
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"member": {"type": "http", "scheme": "bearer", "description": "A member token"}},
        },
        "security": [{"member": []}],
    }
