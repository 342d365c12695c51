"""OMA DM session security (OMA-TS-DM_Security V1.2, security for the DM session): the
application-layer credentials of OMA DM 1.2 (syncml:auth-basic, syncml:auth-md5, the
x-syncml-hmac integrity header) and the Package #0 server-initiated session alert with its
digest, sans-IO."""
