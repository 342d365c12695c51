"""The virtual UICC: ATR, files, the APDU dispatcher and the toolkit's proactive queue."""
