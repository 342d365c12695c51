"""Generic Bootstrapping Architecture (3GPP TS 33.220): key derivation, and the Ub
bootstrapping exchange (HTTP Digest AKA, RFC 3310 / TS 24.109), sans-IO."""
