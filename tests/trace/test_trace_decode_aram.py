"""--trace names the APDUs that read the access rules (MANAGE CHANNEL, GET DATA)."""

from openscws.trace.decode import describe_exchange


def test_ara_m_apdus_are_named() -> None:
    assert describe_exchange(bytes.fromhex("0070000001"), bytes.fromhex("019000")) == (
        "MANAGE CHANNEL open -> 1 [9000 ok]"
    )
    assert describe_exchange(
        bytes.fromhex("81CADF2000"), bytes.fromhex("DF2008") + bytes(8) + b"\x90\x00"
    ) == ("GET DATA refresh tag 11 B [9000 ok]")
    assert describe_exchange(bytes.fromhex("81CAFF4000"), bytes.fromhex("6A88")).startswith(
        "GET DATA all access rules 0 B [6A88"
    )
    assert describe_exchange(bytes.fromhex("0170800100"), bytes.fromhex("9000")) == (
        "MANAGE CHANNEL close 1 [9000 ok]"
    )
