"""The admin server's SIP push trigger: an `SmsSender` that hands the same secured trigger
packet to a Push Proxy Gateway over PAP instead of to an SMSC, and waits for the PPG's outcome
so the job follows it: delivered -> the trigger was taken (the card's PSK-TLS session is what
finishes the job), anything else -> `SendError` naming the PAP state and code, which the
trigger loop records on the job and retries with backoff until the job fails (the console
shows the reason, e.g. "PAP undeliverable 2003 Address Not Found").

The device is named by its MSISDN as a PLMN address (`WAPPUSH=+15550100001/TYPE=PLMN`); the
PPG maps it to the device's SIP address of record (`openscws ppg --plmn-domain`). The PPG's
outcome arrives as a `resultnotification-message` on this sender's loopback notification URL,
with `statusquery-message` polling as the fallback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import Final

from openscws.aio.http_small import HttpReply, HttpRequest, SmallHttpServer
from openscws.aio.pap_client import PapClient, PapClientError
from openscws.push import pap
from openscws.push.pap import (
    Address,
    AddressType,
    MessageState,
    PapError,
    PushResponse,
    ResultNotificationMessage,
    ResultNotificationResponse,
    StatusQueryResponse,
)
from openscws.ras.senders import DeliveryStatus, SendError, SendResult

__all__ = ["SipPushSender"]

log = logging.getLogger(__name__)

NOTIFY_PATH: Final = "/pap/notify"


class SipPushSender:
    def __init__(
        self,
        pap_url: str,
        *,
        username: str,
        password: str,
        outcome_timeout: float = 60.0,
        poll: float = 2.0,
        notify_host: str = "127.0.0.1",
    ) -> None:
        self.client = PapClient(pap_url, username=username, password=password)
        self.outcome_timeout = outcome_timeout
        self.poll = poll
        self._waiting: dict[str, asyncio.Future[ResultNotificationMessage]] = {}
        self._notify = SmallHttpServer(self._on_notify, host=notify_host, max_body=65536)
        self._started = False
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        if self._started:
            await self._notify.close()
        await self.client.aclose()

    async def _ensure_started(self) -> None:
        async with self._lock:
            if not self._started:
                await self._notify.start()
                self._started = True

    async def _on_notify(self, req: HttpRequest) -> HttpReply:
        xml = (("Content-Type", "application/xml"),)
        if req.path != NOTIFY_PATH or req.method != "POST":
            return HttpReply(404)
        try:
            doc = pap.parse(req.body)
        except PapError as e:
            bad = ResultNotificationResponse(push_id="", code=e.code, desc=e.reason[:100])
            return HttpReply(400, pap.encode(bad), xml)
        if not isinstance(doc, ResultNotificationMessage):
            bad = ResultNotificationResponse(push_id="", code=2000, desc="not a notification")
            return HttpReply(400, pap.encode(bad), xml)
        future = self._waiting.get(doc.push_id)
        if future is not None and not future.done():
            future.set_result(doc)
        answer = ResultNotificationResponse(push_id=doc.push_id, code=1000, address=doc.address)
        return HttpReply(200, pap.encode(answer), xml)

    async def send(self, msisdn: str, packet: bytes) -> SendResult:
        await self._ensure_started()
        number = msisdn if msisdn.startswith("+") else "+" + msisdn
        try:
            address = Address(number, AddressType.PLMN)
        except PapError as e:
            raise SendError(f"PAP {pap.code_name(e.code)}: {e.reason}") from None
        push_id = f"ras-{secrets.token_hex(12)}"
        future: asyncio.Future[ResultNotificationMessage] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting[push_id] = future
        try:
            deadline = datetime.now(UTC).replace(microsecond=0) + timedelta(
                seconds=self.outcome_timeout
            )
            try:
                answer = await self.client.push_async(
                    push_id,
                    address,
                    packet,
                    notify_to=self._notify.url(NOTIFY_PATH),
                    deliver_before=deadline,
                )
            except PapClientError as e:
                raise SendError(str(e)) from None
            if not isinstance(answer, PushResponse) or not pap.is_success(answer.code):
                code = getattr(answer, "code", 3000)
                raise _pap_error(f"PPG refused the push: PAP {pap.code_name(code)}", code)
            state, code, desc = await self._outcome(push_id, future)
        finally:
            self._waiting.pop(push_id, None)
        if state is MessageState.DELIVERED:
            return SendResult(DeliveryStatus.DELIVERED, 1, pap_code=code)
        raise _pap_error(
            f"PAP {state.value} {pap.code_name(code)}" + (f": {desc}" if desc else ""), code
        )

    async def _outcome(
        self, push_id: str, future: asyncio.Future[ResultNotificationMessage]
    ) -> tuple[MessageState, int, str | None]:
        loop = asyncio.get_running_loop()
        end = loop.time() + self.outcome_timeout + 5
        while loop.time() < end:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll):
                    note = await asyncio.shield(future)
                    return note.state, note.code, note.desc
            try:
                status = await self.client.status_async(push_id)
            except PapClientError as e:
                log.info("PAP status of %s: %s", push_id, e)
                continue
            if isinstance(status, StatusQueryResponse) and status.results:
                result = status.results[0]
                if result.state is not MessageState.PENDING:
                    return result.state, result.code, result.desc
        return MessageState.TIMEOUT, 4000, "no outcome from the PPG"


def _pap_error(message: str, code: int) -> SendError:
    error = SendError(message)
    error.pap_code = code
    return error
