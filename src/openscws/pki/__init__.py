"""The card issuer's PKI: key pairs, CSRs, the issuer CA, and the WAP certificate profile."""
