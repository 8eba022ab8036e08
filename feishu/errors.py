"""What the Feishu open platform answers, as the client sees it: the codes it acts on and the errors it raises."""

from __future__ import annotations

TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
TOKEN_INVALID_CODES = frozenset({99991661, 99991663})
RATE_LIMIT_CODE = 99991400
CHAT_SEND_LIMIT_CODE = 230020
NOT_IN_CHAT_CODES = frozenset({230002, 232011})
MAX_PAGE_SIZE = 50
# Refresh the token when less than this is left (Feishu hands out a new one in the last 30 minutes).
TOKEN_REFRESH_MARGIN = 300.0
MAX_RATE_LIMIT_WAIT = 60.0


class FeishuError(Exception):
    """A Feishu call that failed. ``transient``: the same call may succeed later (timeouts, 5xx, limits)."""

    def __init__(
        self,
        endpoint: str,
        msg: str,
        *,
        code: int | None = None,
        log_id: str = "",
        http_status: int | None = None,
        transient: bool = False,
        retry_after: float = 0.0,
    ) -> None:
        self.endpoint, self.msg, self.code, self.log_id = endpoint, msg, code, log_id
        self.http_status, self.transient, self.retry_after = http_status, transient, retry_after
        detail = f"code {code}" if code is not None else "no answer"
        super().__init__(f"Feishu {endpoint}: {detail}: {msg}" + (f" (log id {log_id})" if log_id else ""))


class FeishuRateLimited(FeishuError):
    """Still rate-limited after waiting as Feishu asked."""


class BotNotInChat(FeishuError):
    """The app's bot is not (or no longer) a member of the chat."""
