"""MILENAGE, the example 3GPP authentication and key generation functions f1, f1*, f2, f3, f4,
f5 and f5* (3GPP TS 35.206 §4.1, with AES-128 as the kernel E_K; test data TS 35.207/35.208).

    OPc  = OP xor E_K(OP)
    TEMP = E_K(RAND xor OPc)
    IN1  = SQN || AMF || SQN || AMF
    OUT1 = E_K(TEMP xor rot(IN1 xor OPc, r1) xor c1) xor OPc
    OUTi = E_K(rot(TEMP xor OPc, ri) xor ci) xor OPc, i = 2..5
    f1 = OUT1[0..63], f1* = OUT1[64..127], f5 = OUT2[0..47], f2 = OUT2[64..127],
    f3 = OUT3, f4 = OUT4, f5* = OUT5[0..47]

with r1..r5 = 64, 0, 32, 64, 96 bits and c1..c5 = 0, 1, 2, 4, 8 (in the last bit positions).
Sans-IO: bytes in, bytes out; the AES block cipher comes from `cryptography`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["Milenage", "MilenageOutput", "opc_of", "xor"]

_ROTATIONS: Final = (64, 0, 32, 64, 96)  # r1..r5, bits
_CONSTANTS: Final = tuple((0).to_bytes(15, "big") + bytes((c,)) for c in (0, 1, 2, 4, 8))


def xor(a: bytes, b: bytes) -> bytes:
    """a xor b, for byte strings of one length."""
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def _rot(x: bytes, bits: int) -> bytes:
    """Cyclic left rotation of a 128-bit value (TS 35.206 §4.1: rot(x, r))."""
    by = bits // 8
    return x[by:] + x[:by]  # every r_i is a whole number of bytes


def _check(name: str, value: bytes, size: int) -> None:
    if len(value) != size:
        raise ValueError(f"{name} must be {size} bytes, not {len(value)}")


def opc_of(k: bytes, op: bytes) -> bytes:
    """OPc = OP xor E_K(OP): what the card stores instead of the operator's OP."""
    _check("K", k, 16)
    _check("OP", op, 16)
    return xor(op, _encryptor(k)(op))


def _encryptor(k: bytes) -> Callable[[bytes], bytes]:
    """E_K: one AES-128 block (ECB of a single block is the raw block cipher)."""
    cipher = Cipher(algorithms.AES(k), modes.ECB()).encryptor()
    return cipher.update


@dataclass(frozen=True, slots=True)
class MilenageOutput:
    """f2..f5* of one RAND (f1 and f1* depend on SQN and AMF too: `Milenage.f1`)."""

    res: bytes
    """f2: RES / XRES, 8 bytes."""
    ck: bytes = field(repr=False)
    """f3: the cipher key, 16 bytes."""
    ik: bytes = field(repr=False)
    """f4: the integrity key, 16 bytes."""
    ak: bytes
    """f5: the anonymity key that hides SQN in AUTN, 6 bytes."""
    ak_star: bytes
    """f5*: the anonymity key of a resynchronisation (AUTS), 6 bytes."""


class Milenage:
    """The functions for one subscriber key K and its OPc."""

    def __init__(self, k: bytes, opc: bytes) -> None:
        _check("K", k, 16)
        _check("OPc", opc, 16)
        self._ek = _encryptor(k)
        self._opc = opc

    @classmethod
    def with_op(cls, k: bytes, op: bytes) -> Milenage:
        return cls(k, opc_of(k, op))

    def _temp(self, rand: bytes) -> bytes:
        _check("RAND", rand, 16)
        return self._ek(xor(rand, self._opc))

    def f1(self, rand: bytes, sqn: bytes, amf: bytes) -> tuple[bytes, bytes]:
        """(MAC-A, MAC-S): f1 and f1*, 8 bytes each."""
        _check("SQN", sqn, 6)
        _check("AMF", amf, 2)
        temp = self._temp(rand)
        in1 = sqn + amf + sqn + amf
        block = xor(xor(temp, _rot(xor(in1, self._opc), _ROTATIONS[0])), _CONSTANTS[0])
        out1 = xor(self._ek(block), self._opc)
        return out1[:8], out1[8:]

    def f2345(self, rand: bytes) -> MilenageOutput:
        temp_opc = xor(self._temp(rand), self._opc)
        out = [
            xor(self._ek(xor(_rot(temp_opc, r), c)), self._opc)
            for r, c in zip(_ROTATIONS[1:], _CONSTANTS[1:], strict=True)
        ]
        out2, out3, out4, out5 = out
        return MilenageOutput(res=out2[8:], ck=out3, ik=out4, ak=out2[:6], ak_star=out5[:6])
