"""Byte-level building blocks shared by every binary codec: lengths and TLV framing."""
