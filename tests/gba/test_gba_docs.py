"""docs/gba.md follows one bootstrapping and one NAF access byte by byte: this recomputes every
value it shows (MILENAGE test set 1 keys, a fixed RAND, cnonce and clock) through the real BSF
service, the UE's machine, the APDU builders and the Ua helpers, and finds each in the page."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from openscws.aka.milenage import Milenage
from openscws.aka.vector import SqnState, UsimAnswer, check_autn
from openscws.bsf.db import BsfDatabase, default_url
from openscws.bsf.hss import SqlHss, SubscriberKeys
from openscws.bsf.service import BsfService
from openscws.gba.bootstrap_xml import format_lifetime
from openscws.gba.digest import MD5, Challenge
from openscws.gba.kdf import UA_HTTP_DIGEST, ks_int_naf, ks_naf, naf_id
from openscws.gba.ua import ua_credentials, ua_password
from openscws.gba.ub import Bootstrapped, NeedAka, UbClient
from openscws.gba.uicc import gba_bootstrap, gba_naf, update_gbabp
from openscws.ras.vault import Vault

DOC = Path(__file__).parents[2] / "docs" / "gba.md"
K = bytes.fromhex("465b5ce8b199b49faa5f0a2ee238a6bc")
OPC = bytes.fromhex("cd63cb71954a9f4e48a5994e37a02baf")
IMPI = "001010123456789@ims.mnc001.mcc001.3gppnetwork.org"
RAND = bytes.fromhex("23553cbe9637a89d218ae64dae47bf35")


def fixed(values: Iterable[str]) -> Callable[[int], bytes]:
    it = iter(values)
    return lambda n: bytes.fromhex(next(it))[:n]


def test_the_page_shows_what_the_code_computes(tmp_path: Path) -> None:
    doc = " ".join(DOC.read_text().split())
    flat = doc.replace(" ", "")
    vault = Vault.create(tmp_path)
    db = BsfDatabase(default_url(tmp_path))
    db.upgrade()
    hss = SqlHss(db, vault, random=fixed([RAND.hex()]))
    hss.add(SubscriberKeys(IMPI, K, OPC, amf=bytes.fromhex("8000"), sqn=32000))
    service = BsfService(
        db, vault, hss, server_name="bsf.example.net", clock=lambda: 1796637600.0,
        random=fixed(["5ccc069c403ebaf9f0171e9517f30e41"]),
    )  # fmt: skip
    ub = UbClient(IMPI, "bsf.example.net", random=fixed(["0a4f113b" * 4]))
    first = dict(ub.identity_request().headers)["Authorization"]
    assert f"Authorization: {first}" in doc
    challenge = service.ub("GET", first)
    www = dict(challenge.headers)["WWW-Authenticate"]
    assert f"WWW-Authenticate: {www}" in doc
    need = ub.receive(401, {"www-authenticate": www}, b"")
    assert isinstance(need, NeedAka)
    assert "0088008423DD10".lower() + RAND.hex() + "10" + need.autn.hex() + "00" in flat.lower()
    assert gba_bootstrap(need.rand, need.autn).hex() in flat.lower()
    aka = check_autn(Milenage(K, OPC), SqnState(), need.rand, need.autn)
    assert isinstance(aka, UsimAnswer)
    assert aka.sqn.to_bytes(6, "big").hex() in doc
    assert f"DB 08 {aka.res.hex()} 90 00" in doc
    assert f"{aka.ck.hex()} {aka.ik.hex()}" in doc
    second = dict(ub.answer(aka.res).headers)["Authorization"]
    assert f"Authorization: {second}" in doc
    done = service.ub("GET", second)
    fields = {k.lower(): v for k, v in done.headers}
    assert f"Authentication-Info: {fields['authentication-info']}" in doc
    assert done.body.decode().split("\n")[1] in doc
    boot = ub.receive(200, fields, done.body)
    assert isinstance(boot, Bootstrapped)
    lifetime = format_lifetime(boot.lifetime)
    update = update_gbabp(16, boot.btid, lifetime)
    shown = f'00 D6 00 11 3E 28 "{boot.btid}" 14 "{lifetime}"'
    assert shown in doc
    assert update[:6].hex() == "00d600113e28"
    naf = naf_id("naf.example.net", UA_HTTP_DIGEST)
    assert naf.hex() in doc
    apdu = gba_naf(naf, IMPI)
    assert apdu[:7].hex() == "0088008448de14"
    assert f'31 "{IMPI}" 00' in doc
    ks = aka.ck + aka.ik
    ext, internal = ks_naf(ks, RAND, IMPI, naf), ks_int_naf(ks, RAND, IMPI, naf)
    assert f"DB 20 {ext.hex()} 90 00" in doc
    assert internal.hex() in doc
    token = service.add_naf("naf.example.net")
    zn = service.zn(
        f"Bearer {token}",
        json.dumps(
            {"btid": boot.btid, "naf_fqdn": "naf.example.net", "ua_protocol": "0100000002"}
        ).encode(),
    )
    assert zn.body.decode() in doc
    ua = Challenge(
        realm="3GPP-bootstrapping@naf.example.net", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        algorithm=MD5, qop=("auth-int",), opaque="5ccc069c403ebaf9f0171e9517f30e41",
    )  # fmt: skip
    assert f"WWW-Authenticate: {ua.format()}" in doc
    assert ua_password(ext).decode() in doc
    creds = ua_credentials(
        ua, btid=boot.btid, naf_key=ext, method="GET", uri="/service",
        random=fixed(["0a4f113b0a4f113b"]),
    )  # fmt: skip
    assert f"Authorization: {creds.format()}" in doc
    db.dispose()
