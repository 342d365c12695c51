"""UMTS AKA (3GPP TS 33.102 §6.3) with MILENAGE (TS 35.206): the network's authentication
vectors and the USIM's checks, sans-IO."""
