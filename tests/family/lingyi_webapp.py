"""LingYi's web app (``src/lingyi/web_app.py`` at 8e242dd) as far as the hub meets it.

Deployed on port 8900 with HTTPS and a self-signed certificate (``~/.lingyi/cert.pem``). ``POST
/api/lingmessage/notify`` takes loopback callers only (else 403 ``{"error": "forbidden"}``), checks no signature,
reads ``from`` and ``topic``, pushes ``收到灵信: <name> 在「<topic>」发了新消息`` over its bridge socket and answers
``{"received": true}``; a body that is not a JSON object is a 500. The content is read separately by id:
``GET /api/lingmessage/<discussion_id>`` → ``discussions/<id>.json`` in the mailbox directory, or 404
``{"error": "讨论不存在"}``. Because that GET route comes first, a GET of the notify path itself is that lookup (of
a discussion named "notify"): 404; a HEAD is 405 (FastAPI's GET routes do not answer HEAD).

For each notify the emulator also records, in ``facts["discussion"]``, what the lookup of its ``discussion_id``
finds at that moment — what LingYi would show when it opens the discussion it was told about.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hub.lingmessage.discussions import display_name
from tests.family.mailbox_reader import read_discussion
from tests.family.receiver import LOOPBACK_HOSTS, Arrival, FamilyServer, Reply, parse_json_object
from tests.family.tls import SelfSignedCert, lingyi_cert

if TYPE_CHECKING:
    from tests.family.lingyi_backend import LingYiBackend

NOT_FOUND = {"error": "讨论不存在"}


class LingYiWebApp(FamilyServer):
    """LingYi's web app on a free loopback port.

    ``mailbox_dir``: the shared directory (``LINGMESSAGE_DIR``). ``tls``: the certificate to serve (default: the
    run's self-signed LingYi certificate; None serves plain HTTP, as LingYi does without a certificate).
    ``bridge``: a running ``LingYiBackend`` to push the notify line through, as the real app does.
    """

    def __init__(
        self,
        mailbox_dir: Path,
        *,
        tls: SelfSignedCert | bool | None = True,
        bridge: LingYiBackend | None = None,
        port: int | None = None,
    ) -> None:
        cert = lingyi_cert() if tls is True else (tls or None)
        super().__init__(port=port, tls=cert)
        self.mailbox_dir = mailbox_dir
        self.bridge = bridge

    def respond(self, arrival: Arrival) -> Reply:
        path = arrival.path.split("?", 1)[0]
        prefix = "/api/lingmessage/"
        lookup = path.startswith(prefix) and "/" not in path[len(prefix) :]
        if path == self.notify_path and arrival.method == "POST":
            return self._notify(arrival)
        if arrival.method == "HEAD" and (lookup or path == "/api/status"):
            # FastAPI's GET routes do not answer HEAD (unlike plain Starlette's).
            return Reply(405, {"detail": "Method Not Allowed"}, {"Allow": "GET"})
        if arrival.method == "GET" and lookup:
            found = read_discussion(self.mailbox_dir, path[len(prefix) :])
            return Reply(200, found) if found is not None else Reply(404, NOT_FOUND)
        if arrival.method == "GET" and path == "/api/status":
            return Reply(200, {"status": "running", "uptime_port": 8900, "bridge_connected": self.bridge is not None})
        if lookup:
            return Reply(405, {"detail": "Method Not Allowed"}, {"Allow": "GET"})
        return Reply(404, {"detail": "Not Found"})

    def _notify(self, arrival: Arrival) -> Reply:
        if arrival.client not in LOOPBACK_HOSTS:
            return Reply(403, {"error": "forbidden"})
        payload, parsed = parse_json_object(arrival.body)
        if not parsed or not isinstance(payload, dict):
            return Reply(500, "Internal Server Error")
        sender, topic = payload.get("from", "?"), payload.get("topic", "?")
        discussion_id = payload.get("discussion_id")
        arrival.facts.update(
            sender=sender,
            topic=topic,
            discussion_id=discussion_id,
            discussion=read_discussion(self.mailbox_dir, discussion_id) if isinstance(discussion_id, str) else None,
        )
        if self.bridge is not None:
            self.bridge.push(
                f"收到灵信: {display_name(sender) if isinstance(sender, str) else sender} 在「{topic}」发了新消息",
                category="lingmessage",
            )
        return Reply(200, {"received": True})

    def notifies(self) -> list[Arrival]:
        """The notifies it accepted (answered 200)."""
        return [a for a in self.posts() if a.status == 200]
