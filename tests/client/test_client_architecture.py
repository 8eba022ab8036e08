"""The client library is held to the same import contracts as the hub (pyproject.toml, `make lint`): its layers
and no cycle between its modules, checked on a copy with a deliberate violation; and its handler decorators
keep the handlers' types (mypy --strict on a small program that uses them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT, lint_imports

CLIENT = ROOT / "client" / "src" / "linghub"
BIN = Path(sys.executable).parent


def test_the_client_contracts_fail_on_an_http_client_that_imports_the_member(code_copy):
    clean = lint_imports(code_copy)
    assert "Client library layers" in clean and "0 broken." in clean
    with (code_copy / "linghub" / "api.py").open("a") as api:
        api.write("\nfrom linghub import member  # noqa: E402  (the HTTP client reaching up to the member)\n")

    report = lint_imports(code_copy)

    assert "linghub.api is not allowed to import linghub.member" in report
    assert "No cycles are allowed in linghub" in report


TYPED_USE = """
from __future__ import annotations

from linghub import Chat, Member, Message, Reply

member = Member("http://127.0.0.1:1", "t", backend_id="echo")


@member.on_chat
async def answer(chat: Chat) -> Reply:
    return Reply(chat.text)


@member.on_message
def seen(message: Message) -> None:
    pass


@member.on_chat
def misplaced(message: Message) -> None:
    pass


reveal_type(answer)
reveal_type(seen)
reveal_type(member.send)
"""


def test_the_handler_decorators_keep_the_handlers_types_and_refuse_the_wrong_shape(tmp_path):
    program = tmp_path / "agent.py"
    program.write_text(TYPED_USE)
    env = {**os.environ, "MYPYPATH": str(CLIENT.parent)}
    done = subprocess.run(
        [str(BIN / "mypy"), "--strict", "--cache-dir", str(tmp_path / "cache"), str(program)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = done.stdout
    assert 'Revealed type is "def (chat: linghub.models.Chat) -> typing.Coroutine[Any, Any, linghub.models.Reply]"' in (
        report
    )
    assert 'Revealed type is "def (message: linghub.models.Message)"' in report
    assert "-> typing.Coroutine[Any, Any, linghub.models.SendResult]" in report  # the client's method, typed
    assert 'Value of type variable "ChatH" of "on_chat" of "Member" cannot be' in report  # a message handler
    assert report.count("error:") == 1, report
