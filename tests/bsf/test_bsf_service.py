"""The BSF over a real SQLite database, sans sockets: Ub with a USIM's AKA through the UE's
machine (GBA_U and GBA_ME), Zn keys equal to what the USIM derives, and every bad input
answered with its status: wrong RES, replayed nonce, malformed field, unknown IMPI, AUTS
(good and forged), stale B-TID, wrong NAF token or FQDN. SQN survives a new process."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest
from bsf_fixtures import Bsf, make_bsf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openscws.aka.milenage import Milenage
from openscws.aka.vector import MacFailure, SqnState, SyncFailure, UsimAnswer, check_autn
from openscws.bsf.hss import IND_BITS, SubscriberKeys
from openscws.bsf.models import GbaType
from openscws.gba.digest import Challenge, Credentials, split_aka_nonce
from openscws.gba.kdf import UA_HTTP_DIGEST, ks_int_naf, ks_naf, naf_id
from openscws.gba.ub import Bootstrapped, NeedAka, UbClient
from openscws.ras.db import Conflict

K = bytes.fromhex("465b5ce8b199b49faa5f0a2ee238a6bc")
OPC = bytes.fromhex("cd63cb71954a9f4e48a5994e37a02baf")
IMPI = "001010123456789@ims.mnc001.mcc001.3gppnetwork.org"


def _headers(fields: tuple[tuple[str, str], ...]) -> dict[str, str]:
    return {k.lower(): v for k, v in fields}


def _bootstrap(bsf: Bsf, usim: SqnState, impi: str = IMPI) -> tuple[Bootstrapped, UsimAnswer]:
    m = Milenage(K, OPC)
    client = UbClient(impi, "bsf.example.net")
    request = client.identity_request()
    last: UsimAnswer | None = None
    for _ in range(4):
        ans = bsf.service.ub(request.method, _headers(request.headers)["authorization"])
        got = client.receive(ans.status, _headers(ans.headers), ans.body)
        if isinstance(got, Bootstrapped):
            assert last is not None
            return got, last
        assert isinstance(got, NeedAka)
        aka = check_autn(m, usim, got.rand, got.autn)
        assert not isinstance(aka, MacFailure)
        if isinstance(aka, SyncFailure):
            request = client.answer_auts(aka.auts)
        else:
            last = aka
            request = client.answer(aka.res)
    raise AssertionError("did not bootstrap")


@pytest.mark.parametrize("gba_type", [GbaType.GBA_U, GbaType.GBA_ME])
def test_bootstrap_and_zn(bsf: Bsf, gba_type: GbaType) -> None:
    bsf.hss.add(SubscriberKeys(IMPI, K, OPC, gba_type=gba_type))
    boot, aka = _bootstrap(bsf, SqnState())
    assert boot.btid == base64.b64encode(boot.rand).decode() + "@bsf.example.net"
    assert boot.lifetime.timestamp() == bsf.clock.now + 3600
    token = bsf.service.add_naf("naf.example.net")
    body = json.dumps(
        {"btid": boot.btid, "naf_fqdn": "naf.example.net", "ua_protocol": "0100000002"}
    ).encode()
    ans = bsf.service.zn(f"Bearer {token}", body)
    assert ans.status == 200, ans.body
    got = json.loads(ans.body)
    ks = aka.ck + aka.ik
    naf = naf_id("naf.example.net", UA_HTTP_DIGEST)
    assert (got["impi"], got["gba_type"], got["btid"]) == (IMPI, str(gba_type), boot.btid)
    if gba_type is GbaType.GBA_U:
        assert bytes.fromhex(got["ks_ext_naf"]) == ks_naf(ks, boot.rand, IMPI, naf)
        assert bytes.fromhex(got["ks_int_naf"]) == ks_int_naf(ks, boot.rand, IMPI, naf)
        assert "ks_naf" not in got
    else:
        assert bytes.fromhex(got["ks_naf"]) == ks_naf(ks, boot.rand, IMPI, naf)
        assert "ks_int_naf" not in got
    # The lifetime ends: the B-TID is stale.
    bsf.clock.now += 3601
    assert bsf.service.zn(f"Bearer {token}", body).status == 404
    assert bsf.service.purge() == (1, 1)


def _challenge(bsf: Bsf) -> tuple[UbClient, NeedAka]:
    client = UbClient(IMPI, "bsf.example.net")
    request = client.identity_request()
    ans = bsf.service.ub("GET", _headers(request.headers)["authorization"])
    assert ans.status == 401
    need = client.receive(401, _headers(ans.headers), b"")
    assert isinstance(need, NeedAka)
    return client, need


def test_failures_have_their_status(bsf: Bsf, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "openscws.bsf")
    bsf.hss.add(SubscriberKeys(IMPI, K, OPC))
    assert bsf.service.ub("GET", None).status == 400
    assert bsf.service.ub("GET", 'Digest username="x", nonce').status == 400
    assert "malformed Authorization" in caplog.text
    unknown = Credentials("nobody@x", "bsf.example.net", "", "/", "").format()
    assert bsf.service.ub("GET", unknown).status == 403
    assert "nobody@x: unknown IMPI" in caplog.text
    client, need = _challenge(bsf)
    wrong = client.answer(bytes(8))
    auth = _headers(wrong.headers)["authorization"]
    assert bsf.service.ub("GET", auth).status == 403
    assert "wrong RES" in caplog.text
    replay = bsf.service.ub("GET", auth)
    assert replay.status == 401
    assert "replayed nonce" in caplog.text
    assert Challenge.parse(_headers(replay.headers)["www-authenticate"]).nonce
    # A right RES on an answered nonce is a replay too.
    client, need = _challenge(bsf)
    aka = check_autn(Milenage(K, OPC), SqnState(), need.rand, need.autn)
    assert isinstance(aka, UsimAnswer)
    good = _headers(client.answer(aka.res).headers)["authorization"]
    assert bsf.service.ub("GET", good).status == 200
    assert bsf.service.ub("GET", good).status == 401
    # Nonces the BSF never issued, or issued too long ago.
    other = Credentials(IMPI, "bsf.example.net", "AAAA", "/", "00").format()
    stale = bsf.service.ub("GET", other)
    assert stale.status == 401
    assert Challenge.parse(_headers(stale.headers)["www-authenticate"]).stale
    for record in caplog.records:
        assert K.hex() not in record.getMessage()
        assert aka.res.hex() not in record.getMessage()


def test_auts_resynchronises(bsf: Bsf) -> None:
    bsf.hss.add(SubscriberKeys(IMPI, K, OPC, sqn=0))
    usim = SqnState()
    usim.accept(7000 << IND_BITS)  # the card is ahead of the BSF
    _bootstrap(bsf, usim)
    assert bsf.hss.list()[0].sqn == 7001 << IND_BITS


def test_forged_auts_is_refused(bsf: Bsf, caplog: pytest.LogCaptureFixture) -> None:
    bsf.hss.add(SubscriberKeys(IMPI, K, OPC))
    client, _ = _challenge(bsf)
    forged = client.answer_auts(bytes(14))
    assert bsf.service.ub("GET", _headers(forged.headers)["authorization"]).status == 403
    assert "AUTS does not check" in caplog.text
    client, _ = _challenge(bsf)
    auth = _headers(client.answer(bytes(8)).headers)["authorization"]
    bad = auth.replace("algorithm=AKAv1-MD5", 'algorithm=AKAv1-MD5, auts="!!"')
    assert bsf.service.ub("GET", bad).status == 400


def test_zn_refusals(bsf: Bsf) -> None:
    token = bsf.service.add_naf("naf.example.net")
    with pytest.raises(Conflict):
        bsf.service.add_naf("NAF.example.net.")
    body = json.dumps({"btid": "x@y", "naf_fqdn": "naf.example.net", "ua_protocol": "0100000002"})
    assert bsf.service.zn(None, body.encode()).status == 401
    assert bsf.service.zn("Bearer nope", body.encode()).status == 401
    assert bsf.service.zn(f"Bearer {token}", b"{").status == 400
    other = body.replace("naf.example.net", "other.example.net")
    assert bsf.service.zn(f"Bearer {token}", other.encode()).status == 403
    assert bsf.service.zn(f"Bearer {token}", body.encode()).status == 404
    assert bsf.service.list_nafs() == ["naf.example.net"]
    bsf.service.remove_naf("naf.example.net")
    assert bsf.service.zn(f"Bearer {token}", body.encode()).status == 401


def test_sqn_is_kept_across_processes(tmp_path: Path) -> None:
    first = make_bsf(tmp_path / "b")
    first.hss.add(SubscriberKeys(IMPI, K, OPC, sqn=32))
    v1, _ = first.hss.vector(IMPI) or (None, None)
    first.db.dispose()
    second = make_bsf(tmp_path / "b")
    v2, _ = second.hss.vector(IMPI) or (None, None)
    assert v1 is not None
    assert v2 is not None
    m = Milenage(K, OPC)
    usim = SqnState()
    a1 = check_autn(m, usim, v1.rand, v1.autn)
    a2 = check_autn(m, usim, v2.rand, v2.autn)
    assert isinstance(a1, UsimAnswer)
    assert isinstance(a2, UsimAnswer)
    assert a2.sqn == a1.sqn + 32 == 3 << IND_BITS
    assert split_aka_nonce(base64.b64encode(v1.rand + v1.autn).decode())[0] == v1.rand
    second.db.dispose()


def test_migrations_match_the_models(bsf: Bsf) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from openscws.bsf.models import Base

    with bsf.db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "version_table": "bsf_alembic_version"}
        )
        assert list(compare_metadata(context, Base.metadata)) == []
    assert bsf.db.current_revision() == bsf.db.head_revision() == "bsf0001"


def test_concurrent_answers_to_one_nonce(bsf: Bsf) -> None:
    """Two copies of one right answer at once: exactly one bootstraps, the other is a replay."""
    import threading

    bsf.hss.add(SubscriberKeys(IMPI, K, OPC))
    client, need = _challenge(bsf)
    aka = check_autn(Milenage(K, OPC), SqnState(), need.rand, need.autn)
    assert isinstance(aka, UsimAnswer)
    auth = _headers(client.answer(aka.res).headers)["authorization"]
    statuses: list[int] = []
    barrier = threading.Barrier(4)

    def answer() -> None:
        barrier.wait()
        statuses.append(bsf.service.ub("GET", auth).status)

    threads = [threading.Thread(target=answer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(statuses) == [200, 401, 401, 401]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.one_of(
        st.text(max_size=300),
        st.builds(
            lambda user, nonce, extra: (
                f'Digest username="{user}", realm="bsf.example.net", nonce="{nonce}", '
                f'uri="/", response="{"0" * 32}"{extra}'
            ),
            st.sampled_from([IMPI, "x@y", ""]),
            st.text("ABCDabcd0123+/=", max_size=60),
            st.sampled_from(
                [
                    "",
                    ', qop=auth-int, nc=00000001, cnonce="c"',
                    ', auts="AAAA"',
                    ', auts="' + "A" * 19 + '="',
                    ", algorithm=SHA-1",
                ]
            ),
        ),
    )
)
def test_fuzz_ub_answers_in_http_terms(bsf: Bsf, field: str) -> None:
    if not bsf.hss.list():
        bsf.hss.add(SubscriberKeys(IMPI, K, OPC))
    assert bsf.service.ub("GET", field).status in (400, 401, 403)
