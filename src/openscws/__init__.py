"""openscws: an open implementation of the OMA Smart Card Web Server enabler."""

__version__ = "0.1.0"
