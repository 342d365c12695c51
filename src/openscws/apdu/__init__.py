"""ISO 7816-4 / ETSI TS 102 221 command and response APDUs and status words."""
