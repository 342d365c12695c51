"""The DM server's notification: when a job is created for a device with an MSISDN, the
server sends it a Package #0 (OMA-TS-DM_Notification §6, built by `dm.notification`) in a WAP
push SMS (`dm.client_push.package0_sms`, OMA-TS-DM_Notification §6.3.1) through the same SMS
sender the admin server uses for its triggers: `ras.senders.LocalTerminalSender`, POSTing to
the terminal's local SMS entry point (`openscws up --dm` hands a DM push to its DM client).

The Package #0's session id is the job's number (its low 16 bits); its digest is keyed with
the server's credentials to the device (SRVCRED) and the nonce the device gave last."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

from openscws.dm.client_push import package0_sms
from openscws.dm.db import DmStore, JobInfo
from openscws.dm.notification import UiMode
from openscws.ras.senders import LocalTerminalSender, SendError

__all__ = ["Notice", "Notifier"]

log = logging.getLogger(__name__)

NO_MSISDN: Final = "no MSISDN"


@dataclass(frozen=True, slots=True)
class Notice:
    """What became of a job's Package #0: `status` is the terminal's X-SMS-Status
    (delivered, por, busy, error), "failed" when it could not be handed on, or "none" when
    the device has no MSISDN."""

    status: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "detail": self.detail}


class Notifier:
    """Sends a job's Package #0 (blocking: the REST API runs in a worker thread)."""

    def __init__(self, store: DmStore, sender: LocalTerminalSender) -> None:
        self.store = store
        self.sender = sender

    def notify(self, job: JobInfo) -> Notice:
        device = self.store.secrets(job.dev_id)
        if device is None or device.info.msisdn is None:
            return Notice("none", NO_MSISDN)
        pkg0 = device.account.package0(job.id & 0xFFFF, UiMode.BACKGROUND)
        tpdu = package0_sms(pkg0, originating=self.sender.originating.digits)
        try:
            status, _ = self.sender.post_tpdu(tpdu, device.info.msisdn)
        except SendError as exc:
            log.warning("Package #0 for job %d (%s): %s", job.id, job.dev_id, exc)
            return Notice("failed", str(exc))
        log.info("Package #0 for job %d to %s: %s", job.id, job.dev_id, status)
        return Notice(str(status))
