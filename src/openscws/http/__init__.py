"""The card-side HTTP/1.1 server: a sans-IO connection driven once per BIP channel."""

from openscws.http.connection import HttpServerConnection, split_target
from openscws.http.limits import CardLimits, RamBudget

__all__ = ["CardLimits", "HttpServerConnection", "RamBudget", "split_target"]
