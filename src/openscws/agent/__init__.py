"""The card's remote administration agent: the Amd B trigger and session (`app`), its
credentials (`credentials`) and the SCWS admin commands it executes (`commands`)."""
