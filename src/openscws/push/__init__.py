"""OMA Push over SIP for admin-session triggers, sans-IO: the Push Access Protocol documents
(`pap`), the SIP message codec (`sip`), the RFC 3261 non-INVITE transactions (`transaction`)
and the push content and addressing (`content`). The shells (PPG, push client, SCWS Push
Gateway) live in `openscws.aio`."""
