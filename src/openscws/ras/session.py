"""What the admin server says to one card in one Amd B session, sans-IO.

A job is a list of operations on the card's content, pinned to repository versions, or a
change of the card's admin keys (`PUT /.scws/keys`, committed with the job). The
session sends them as SCWS admin commands (embedded HTTP requests, `agent.commands`), all
under the job's id as the card's transaction id, then `POST /.scws/commit`; the job is done
only when the card answers that commit. When an earlier attempt may have reached the commit
(its connection dropped after the card committed but before the answer arrived), the session
first asks `GET /.scws/transactions/<id>`: a committed job is not applied twice."""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Sequence
from typing import Any

from openscws.amdb.embedded import EmbeddedRequest, EmbeddedResponse
from openscws.ras.service import ContentItem

TX_HEADER = "X-SCWS-Transaction"


class Verdict(enum.Enum):
    DONE = "done"
    """The card committed the job (now, or in an earlier attempt)."""
    RETRY = "retry"
    """Worth another attempt (the card was busy, an error of ours)."""
    FAILED = "failed"
    """The card refused a command for good (4xx): retrying changes nothing."""


class RasSession:
    """Feeds one job to one card. `fetch(path, version)` reads the repository."""

    def __init__(
        self,
        txid: str,
        operations: Sequence[dict[str, Any]],
        fetch: Callable[[str, int], ContentItem],
        *,
        maybe_applied: bool = False,
    ) -> None:
        self.txid = txid
        self.verdict: Verdict | None = None
        self.reason: str | None = None
        self.log: list[str] = []
        self._fetch = fetch
        self._ops = list(operations)
        self._next = 0
        self._asked_committed = maybe_applied
        self._sent: EmbeddedRequest | None = None
        self._checking = False  # the last command asked whether the job was committed
        self._committing = False

    def next_command(self, answer: EmbeddedResponse | None) -> EmbeddedRequest | None:
        """The card's answer to the previous command (None for the first POST) in, the next
        command out; None ends the session (see `verdict`)."""
        if self._sent is not None:
            if answer is None:
                self._end(Verdict.RETRY, "the card sent no answer to a command")
                return None
            if not self._judge(self._sent, answer):
                return None
        if self.verdict is not None:
            return None
        request = self._build()
        self._sent = request
        return request

    def _build(self) -> EmbeddedRequest:
        tx = (TX_HEADER, self.txid)
        if self._asked_committed:
            self._asked_committed = False
            self._checking = True
            return EmbeddedRequest("GET", f"/.scws/transactions/{self.txid}", ())
        self._checking = False
        if self._next < len(self._ops):
            op = self._ops[self._next]
            self._next += 1
            path = str(op["path"])
            if op["op"] == "rotate-keys":
                body = op["body"]
                assert isinstance(body, bytes)
                json_type = ("Content-Type", "application/json")
                return EmbeddedRequest("PUT", path, (tx, json_type), body)
            if op["op"] == "delete":
                return EmbeddedRequest("DELETE", path, (tx,))
            if op["op"] == "acp":  # the card's access rules, a policy document
                body = json.dumps(op["policy"], separators=(",", ":")).encode()
                return EmbeddedRequest(
                    "PUT", path, (tx, ("Content-Type", "application/json")), body
                )
            item = self._fetch(path, int(op["version"]))
            info = item.info
            headers = [tx, ("Content-Type", info.content_type)]
            if info.content_encoding:
                headers.append(("Content-Encoding", info.content_encoding))
            if info.content_language:
                headers.append(("Content-Language", info.content_language))
            headers.append(("X-SCWS-Realm", info.realm or ""))
            return EmbeddedRequest("PUT", path, tuple(headers), item.body)
        self._committing = True
        return EmbeddedRequest("POST", "/.scws/commit", (tx,))

    def _judge(self, sent: EmbeddedRequest, answer: EmbeddedResponse) -> bool:
        status = answer.status
        self.log.append(f"{sent.method} {sent.target} -> {status}")
        if self._checking:
            if status == 200:
                self._end(Verdict.DONE, None)
                self.log.append(f"transaction {self.txid} was committed in an earlier attempt")
                return False
            if status == 404:
                return True
            self._end(Verdict.RETRY, f"transaction query answered {status}")
            return False
        if self._committing:
            if status == 200:
                try:
                    detail = json.loads(answer.body or b"{}")
                except ValueError:
                    detail = {}
                if isinstance(detail, dict) and detail.get("already"):
                    self.log.append("the card had this transaction already: nothing re-applied")
                self._end(Verdict.DONE, None)
                return False
            return self._refused(sent, status)
        if sent.method == "DELETE" and status in (204, 404):
            return True
        if sent.method == "PUT" and status in (200, 201, 204):
            return True
        return self._refused(sent, status)

    def _refused(self, sent: EmbeddedRequest, status: int) -> bool:
        reason = f"the card answered {status} to {sent.method} {sent.target}"
        self._end(Verdict.FAILED if 400 <= status < 500 else Verdict.RETRY, reason)
        return False

    def _end(self, verdict: Verdict, reason: str | None) -> None:
        self.verdict = verdict
        self.reason = reason
        if reason:
            self.log.append(reason)
