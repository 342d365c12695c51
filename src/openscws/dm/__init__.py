"""OMA DM 1.2 with its session security, sans-IO: the SyncML DM message in XML and WBXML
(`element`, `wbxml`, `message`), the client and server sessions (`session`), the client's
management tree (`tree`), the application-layer credentials (`auth`: syncml:auth-basic,
syncml:auth-md5, x-syncml-hmac) and Package #0 (`notification`)."""
