"""The BSF's authentication vectors against osmo-auc-gen (Debian package libosmocore-utils), an
independent MILENAGE: for random subscribers, the challenge the BSF sends (nonce = base64(RAND
|| AUTN), as osmo-auc-gen's "IMS nonce") and the RES/CK/IK behind it are osmo-auc-gen's, and
the AUTS the BSF resynchronises from gives osmo-auc-gen the same SQN_MS."""

from __future__ import annotations

import base64
import random
import subprocess
from collections.abc import Callable

import pytest
from bsf_fixtures import Bsf

from openscws.aka.milenage import Milenage
from openscws.aka.vector import SqnState, SyncFailure, check_autn, make_vector
from openscws.bsf.hss import IND_BITS, SubscriberKeys
from openscws.gba.digest import Challenge, Credentials, split_aka_nonce


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
def test_bsf_vectors_against_osmo_auc_gen(bsf: Bsf, need_tool: Callable[[str, str], str]) -> None:
    tool = need_tool("osmo-auc-gen", "libosmocore-utils")
    rng = random.Random(8116)
    for n in range(8):
        k, opc, amf = rng.randbytes(16), rng.randbytes(16), rng.randbytes(2)
        impi = f"00101000000000{n}@ims.mnc001.mcc001.3gppnetwork.org"
        seq = rng.randrange(1, 1 << 40)
        bsf.hss.add(SubscriberKeys(impi, k, opc, amf=amf, sqn=seq << IND_BITS))
        ask = Credentials(impi, "bsf.example.net", "", "/", "").format()
        answer = bsf.service.ub("GET", ask)
        assert answer.status == 401
        challenge = Challenge.parse(dict(answer.headers)["WWW-Authenticate"])
        rand, autn, extra = split_aka_nonce(challenge.nonce)
        assert extra == b""
        sqn = (seq + 1) << IND_BITS  # the BSF's next SQN, committed before the 401
        got = _osmo(
            tool, "-k", k.hex(), "-o", opc.hex(), "-r", rand.hex(), "-f", amf.hex(), "-s", str(sqn)
        )
        assert got["AUTN"] == autn.hex()
        assert got["IMS nonce"] == challenge.nonce
        ours = make_vector(Milenage(k, opc), rand, sqn, amf)
        assert (got["RES"], got["CK"], got["IK"]) == (ours.xres.hex(), ours.ck.hex(), ours.ik.hex())
        # A USIM ahead of the BSF: its AUTS, read by osmo-auc-gen and by the BSF's HSS.
        usim = SqnState()
        usim.accept(sqn + (rng.randrange(1, 1000) << IND_BITS))
        sync = check_autn(Milenage(k, opc), usim, rand, autn)
        assert isinstance(sync, SyncFailure)
        resync = _osmo(
            tool, "-k", k.hex(), "-o", opc.hex(), "-r", rand.hex(), "-A", sync.auts.hex()
        )
        assert int(resync["SQN.MS"]) == usim.sqn_ms
        assert bsf.hss.resync(impi, rand, sync.auts)
        info = next(i for i in bsf.hss.list() if i.impi == impi)
        assert info.sqn == usim.sqn_ms
        assert base64.b64decode(challenge.nonce)[:16] == rand
