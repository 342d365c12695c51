"""OMA BCAST smartcard profile: the MBMS keys (MUK, MRK) from GBA, the (R-)UIM RK keys, the
MIKEY codec for LTKMs and the service provisioning messages. Sans-IO."""
