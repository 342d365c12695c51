"""The Bootstrapping Server Function (3GPP TS 33.220 §4.2.1): Ub towards the terminals (HTTP
Digest AKA, TS 24.109 §4), a subscriber store standing in for the HSS (Zh), and the NAF key
service (Zn). Its state is in its own database (SQLite by default, PostgreSQL at scale)."""
