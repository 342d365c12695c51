"""The push initiator's PAP client: submissions, status queries and cancellations POSTed to a
PPG's PAP URL (HTTP Basic), each answer parsed as a PAP document. `push`, `status` and
`cancel` block (urllib, for a thread or a command line); `push_async` and `status_async` are
for the admin server's event loop: an http:// PPG is asked with an asyncio POST (no thread
each), an https:// one through a worker thread."""

from __future__ import annotations

import asyncio
import base64
import secrets
import urllib.error
import urllib.request
from datetime import datetime
from typing import Final

from openscws.aio.http_small import ConnectionPool, post
from openscws.push import pap
from openscws.push.content import PUSH_CONTENT_TYPE, SCWS_APP_ID
from openscws.push.pap import (
    Address,
    CancelMessage,
    PapCode,
    PapError,
    PushMessage,
    StatusQueryMessage,
)
from openscws.push.submission import ContentEntity, build_submission

__all__ = ["PapClient", "PapClientError"]

MAX_ANSWER: Final = 65536


class PapClientError(Exception):
    """The PPG could not be reached or did not answer with a PAP document."""


class PapClient:
    def __init__(
        self,
        url: str,
        *,
        username: str,
        password: str,
        timeout: float = 30.0,
        app_id: str = SCWS_APP_ID,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("the PAP URL is http:// or https://")
        self.url = url
        self._auth = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.timeout = timeout
        self.app_id = app_id
        self._pool = ConnectionPool()

    async def aclose(self) -> None:
        """Closes the kept-alive connections of the asyncio calls."""
        await self._pool.close()

    def __repr__(self) -> str:
        return f"PapClient({self.url!r})"

    def push(
        self,
        push_id: str,
        address: Address,
        packet: bytes,
        *,
        notify_to: str | None = None,
        deliver_before: datetime | None = None,
    ) -> pap.PapDocument:
        header, body = self._submission(push_id, address, packet, notify_to, deliver_before)
        return self._post(header, body)

    async def push_async(
        self,
        push_id: str,
        address: Address,
        packet: bytes,
        *,
        notify_to: str | None = None,
        deliver_before: datetime | None = None,
    ) -> pap.PapDocument:
        header, body = self._submission(push_id, address, packet, notify_to, deliver_before)
        return await self._post_async(header, body)

    async def status_async(self, push_id: str) -> pap.PapDocument:
        body = pap.encode(StatusQueryMessage(push_id=push_id))
        return await self._post_async("application/xml", body)

    def _submission(
        self,
        push_id: str,
        address: Address,
        packet: bytes,
        notify_to: str | None,
        deliver_before: datetime | None,
    ) -> tuple[str, bytes]:
        message = PushMessage(
            push_id=push_id,
            addresses=(address,),
            notify_to=notify_to,
            deliver_before=deliver_before,
        )
        content = ContentEntity(PUSH_CONTENT_TYPE, packet, self.app_id)
        return build_submission(message, content, "pap-" + secrets.token_hex(12))

    async def _post_async(self, content_type: str, body: bytes) -> pap.PapDocument:
        if not self.url.startswith("http://"):
            return await asyncio.to_thread(self._post, content_type, body)
        headers = (("Content-Type", content_type), ("Authorization", self._auth))
        try:
            reply = await post(
                self.url,
                body,
                headers,
                timeout=self.timeout,
                max_body=MAX_ANSWER,
                pool=self._pool,
            )
        except (OSError, TimeoutError) as e:
            raise PapClientError(f"{self.url}: {e}") from e
        if reply.status in (401, 403):
            raise PapClientError(f"{self.url} refused the push initiator ({reply.status})")
        if reply.status >= 300 and not reply.body.lstrip().startswith(b"<"):
            raise PapClientError(f"{self.url} answered HTTP {reply.status}")
        return self._parsed(reply.body)

    def status(self, push_id: str) -> pap.PapDocument:
        return self._post("application/xml", pap.encode(StatusQueryMessage(push_id=push_id)))

    def cancel(self, push_id: str) -> pap.PapDocument:
        return self._post("application/xml", pap.encode(CancelMessage(push_id=push_id)))

    def _post(self, content_type: str, body: bytes) -> pap.PapDocument:
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={"Content-Type": content_type, "Authorization": self._auth},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer: bytes = response.read(MAX_ANSWER)
        except urllib.error.HTTPError as e:
            answer = e.read(MAX_ANSWER)
            e.close()
            if e.code in (401, 403):
                raise PapClientError(f"{self.url} refused the push initiator ({e.code})") from e
            if not answer.lstrip().startswith(b"<"):
                raise PapClientError(f"{self.url} answered HTTP {e.code}") from e
        except (urllib.error.URLError, OSError) as e:
            raise PapClientError(f"{self.url}: {e}") from e
        return self._parsed(answer)

    def _parsed(self, answer: bytes) -> pap.PapDocument:
        try:
            return pap.parse(answer)
        except PapError as e:
            raise PapClientError(f"{self.url} answered no PAP document: {e.reason}") from None


def answer_code(document: pap.PapDocument) -> int:
    """The PAP code of an answer, for a caller that only needs success or failure."""
    code = getattr(document, "code", None)
    if isinstance(code, int):
        return code
    results = getattr(document, "results", ())
    return int(results[0].code) if results else int(PapCode.INTERNAL_SERVER_ERROR)
