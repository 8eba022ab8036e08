"""Against a real hub (daphne): members added with `member add --openclaw …` and `--apprise …` get what is sent to
them at a local OpenClaw gateway and a local json:// target, and each message's trace shows the attempt."""

from __future__ import annotations

import httpx
import pytest

from tests.fakes.openclaw_gateway import OpenClawGateway
from tests.http_peer import HttpPeer
from tests.support import manage, running_hub

pytestmark = pytest.mark.e2e

TOKEN = "e2e-hook-token-0123456789"


def _add(data_dir, member_id: str, *extra: str) -> str:
    out = manage(data_dir, "member", "add", member_id, "--name", member_id, *extra)
    return out.stdout.strip().splitlines()[-1].split()[-1]


def test_openclaw_and_apprise_members_are_reached_and_their_messages_traced(tmp_path):
    token_file = tmp_path / "hook-token"
    token_file.write_text(TOKEN)
    manage(tmp_path, "migrate", "--noinput")
    with OpenClawGateway(token=TOKEN) as gateway, HttpPeer() as target:
        _add(tmp_path, "claw", "--openclaw", gateway.hooks_url, "--openclaw-token-file", str(token_file))
        _add(tmp_path, "ops", "--kind", "user", "--apprise", f"json://127.0.0.1:{target.port}/notify")
        sender = _add(tmp_path, "lingyi")
        listed = manage(tmp_path, "member", "list").stdout
        assert TOKEN not in listed and "openclaw=" in listed and "apprise=json://" in listed
        with running_hub(data_dir=tmp_path) as hub, httpx.Client(base_url=hub.http_url, timeout=10) as client:
            auth = {"Authorization": f"Bearer {sender}"}
            to_claw = client.post("/api/unified/send", json={"recipient_id": "claw", "content": "审查"}, headers=auth)
            to_ops = client.post(
                "/api/unified/send", json={"recipient_id": "ops", "topic": "disk", "content": "full"}, headers=auth
            )
            assert to_claw.json()["channel"] == "openclaw" and to_ops.json()["channel"] == "apprise"
            assert "审查" in gateway.accepted[0].json["message"]
            assert target.requests[0].json["title"] == "disk" and target.requests[0].json["message"] == "full"
            for answer, channel in ((to_claw, "openclaw"), (to_ops, "apprise")):
                trace = client.get(f"/api/unified/messages/{answer.json()['message_id']}/trace", headers=auth).json()
                steps = [(e["event"], e["channel"], e["outcome"]) for e in trace["events"]]
                assert ("attempt", channel, "delivered") in steps and steps[-1] == ("delivered", channel, "")
