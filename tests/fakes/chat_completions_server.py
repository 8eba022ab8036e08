"""A real local OpenAI-compatible chat-completions server for tests (repair lines).

``FakeChatCompletions`` answers ``POST /v1/chat/completions`` with the next queued reply: a text (wrapped in the
OpenAI response shape), an HTTP status, or a raw body. It records every request body and Authorization header.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeChatCompletions:
    def __init__(self) -> None:
        self.replies: list[tuple[int, bytes]] = []
        self.requests: list[dict] = []
        self.authorizations: list[str | None] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with fake.lock:
                    fake.requests.append({"path": self.path, "body": json.loads(body or b"{}")})
                    fake.authorizations.append(self.headers.get("Authorization"))
                    status, payload = fake.replies.pop(0) if fake.replies else (500, b"no reply queued")
                if self.path != "/v1/chat/completions":
                    status, payload = 404, b"not found"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def reply_text(self, text: str) -> None:
        payload = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        }
        self.replies.append((200, json.dumps(payload, ensure_ascii=False).encode()))

    def reply_status(self, status: int, body: bytes = b'{"error":"boom"}') -> None:
        self.replies.append((status, body))

    def reply_raw(self, body: bytes) -> None:
        self.replies.append((200, body))

    def __enter__(self) -> FakeChatCompletions:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
