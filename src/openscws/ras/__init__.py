"""The SCWS remote administration server."""
