"""The terminal (handset) side: the CAT engine that drives the card, and its BIP gateway."""
