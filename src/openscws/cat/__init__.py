"""ETSI TS 102 223 Card Application Toolkit: data objects, proactive commands, terminal
responses, envelopes and the terminal profile, declared once and typed."""
