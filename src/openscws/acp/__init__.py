"""The SCWS access control policy: the rules the card holds (GlobalPlatform SEAC coding with an
SCWS extension), the document the tools and the admin command carry, and the decision the
SCWS Gateway takes for each local application. Sans-IO."""
