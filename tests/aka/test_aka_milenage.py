"""MILENAGE against 3GPP TS 35.208 test set 1, and against osmo-auc-gen (Debian package
libosmocore-utils) as an independent implementation on random subscribers."""

from __future__ import annotations

import base64
import random
import subprocess
from collections.abc import Callable

import pytest

from openscws.aka.milenage import Milenage, opc_of
from openscws.aka.vector import (
    MacFailure,
    SqnState,
    SyncFailure,
    UsimAnswer,
    check_autn,
    kc_of,
    make_vector,
    resync_sqn,
    sres_of,
)

# TS 35.208 §4.3, test set 1 (the same in TS 35.207 §4.3).
K = bytes.fromhex("465b5ce8b199b49faa5f0a2ee238a6bc")
RAND = bytes.fromhex("23553cbe9637a89d218ae64dae47bf35")
SQN = bytes.fromhex("ff9bb4d0b607")
AMF = bytes.fromhex("b9b9")
OP = bytes.fromhex("cdc202d5123e20f62b6d676ac72cb318")
OPC = bytes.fromhex("cd63cb71954a9f4e48a5994e37a02baf")


def test_test_set_1() -> None:
    assert opc_of(K, OP) == OPC
    m = Milenage(K, OPC)
    mac_a, mac_s = m.f1(RAND, SQN, AMF)
    assert (mac_a.hex(), mac_s.hex()) == ("4a9ffac354dfafb3", "01cfaf9ec4e871e9")
    out = m.f2345(RAND)
    assert out.res.hex() == "a54211d5e3ba50bf"
    assert out.ck.hex() == "b40ba9a3c58b2a05bbf0d987b21bf8cb"
    assert out.ik.hex() == "f769bcd751044604127672711c6d3441"
    assert (out.ak.hex(), out.ak_star.hex()) == ("aa689c648370", "451e8beca43b")
    vector = make_vector(Milenage.with_op(K, OP), RAND, int.from_bytes(SQN, "big"), AMF)
    assert vector.autn.hex() == "55f328b43577b9b94a9ffac354dfafb3"
    assert "b40ba9a3" not in repr(vector)  # keys stay out of logs
    # The GSM conversion functions (TS 33.102 §6.8.1.2), as osmo-auc-gen prints them.
    assert sres_of(out.res).hex() == "46f8416a"
    assert kc_of(out.ck, out.ik).hex() == "eae4be823af9a08b"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: Milenage(K[:15], OPC), "K must be 16 bytes"),
        (lambda: Milenage(K, OPC + b"\0"), "OPc must be 16 bytes"),
        (lambda: Milenage(K, OPC).f1(RAND, SQN[:5], AMF), "SQN must be 6 bytes"),
        (lambda: Milenage(K, OPC).f2345(RAND[:8]), "RAND must be 16 bytes"),
        (lambda: make_vector(Milenage(K, OPC), RAND, 1 << 48, AMF), "SQN is 48 bits"),
    ],
)
def test_sizes_are_checked(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def _osmo(tool: str, *args: str) -> dict[str, str]:
    done = subprocess.run(
        [tool, "-3", "-a", "milenage", *args], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    fields = {}
    for line in done.stdout.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip()] = value.strip()
    return fields


@pytest.mark.peer
def test_against_osmo_auc_gen(need_tool: Callable[[str, str], str]) -> None:
    tool = need_tool("osmo-auc-gen", "libosmocore-utils")
    rng = random.Random(3516)
    for _ in range(12):
        k, opc, rand = (rng.randbytes(16) for _ in range(3))
        amf = rng.randbytes(2)
        sqn = rng.randrange(32, 1 << 48)
        got = _osmo(
            tool, "-k", k.hex(), "-o", opc.hex(), "-r", rand.hex(), "-f", amf.hex(), "-s", str(sqn)
        )
        m = Milenage(k, opc)
        vector = make_vector(m, rand, sqn, amf)
        assert got["AUTN"] == vector.autn.hex()
        assert got["RES"] == vector.xres.hex()
        assert got["CK"] == vector.ck.hex()
        assert got["IK"] == vector.ik.hex()
        assert got["SRES"] == sres_of(vector.xres).hex()
        assert got["Kc"] == kc_of(vector.ck, vector.ik).hex()
        assert got["IMS nonce"] == base64.b64encode(rand + vector.autn).decode()

        # The USIM takes the vector once; a replay makes it resynchronise, and osmo-auc-gen
        # reads the same SQN_MS out of our AUTS.
        state = SqnState()
        state.accept(sqn - 32)  # the USIM's last SQN: the same IND slot, one SEQ before
        answer = check_autn(m, state, rand, vector.autn)
        assert isinstance(answer, UsimAnswer)
        assert (answer.res, answer.sqn) == (vector.xres, sqn)
        again = check_autn(m, state, rand, vector.autn)
        assert isinstance(again, SyncFailure)
        assert resync_sqn(m, rand, again.auts) == sqn
        resync = _osmo(
            tool, "-k", k.hex(), "-o", opc.hex(), "-r", rand.hex(), "-A", again.auts.hex()
        )
        assert int(resync["SQN.MS"]) == sqn


def test_usim_checks_autn() -> None:
    m = Milenage(K, OPC)
    state = SqnState()
    first = make_vector(m, RAND, 0x1234, AMF)
    assert isinstance(check_autn(m, state, RAND, first.autn), UsimAnswer)
    # Another subscriber's AUTN, or a flipped bit: MAC failure, the state untouched.
    other = make_vector(Milenage(bytes(16), OPC), RAND, 0x1240, AMF)
    assert isinstance(check_autn(m, state, RAND, other.autn), MacFailure)
    forged = bytearray(make_vector(m, RAND, 0x1240, AMF).autn)
    forged[7] ^= 1  # AMF is under MAC-A
    assert isinstance(check_autn(m, state, RAND, bytes(forged)), MacFailure)
    assert state.sqn_ms == 0x1234
    # TS 33.102 Annex C.2: one SEQ per IND slot; an older SEQ in another slot is fresh ...
    assert isinstance(
        check_autn(m, state, RAND, make_vector(m, RAND, 0x0020, AMF).autn), UsimAnswer
    )
    # ... an older or equal one in the same slot is not: AUTS carries SQN_MS ...
    stale = check_autn(m, state, RAND, make_vector(m, RAND, 0x1234 - 32, AMF).autn)
    assert isinstance(stale, SyncFailure)
    assert resync_sqn(m, RAND, stale.auts) == 0x1234
    # ... and one too far ahead (more than 2^28 SEQ steps) is refused as well.
    far = (0x1234 >> 5) + (1 << 28) + 1
    assert isinstance(
        check_autn(m, state, RAND, make_vector(m, RAND, far << 5, AMF).autn), SyncFailure
    )
    # A forged AUTS does not resynchronise anything.
    assert resync_sqn(m, RAND, bytes(14)) is None
