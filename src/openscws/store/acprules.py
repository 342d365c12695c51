"""The card image's access rules (the value the card's ARA-M serves, `uicc.aram.RULES_KEY`), read
and written for the offline tools. Writes are the image's atomic value writes."""

from __future__ import annotations

from openscws.acp.rules import AcpDecodeError, RuleSet, decode_rules, encode_rules
from openscws.errors import StoreError
from openscws.scws.model import ResourceStore
from openscws.uicc.aram import RULES_KEY, served_rules

__all__ = ["load_rules", "save_rules"]


def load_rules(store: ResourceStore) -> RuleSet:
    """The stored rules (none: an empty set); StoreError when they cannot be parsed."""
    served = served_rules(store.get_value(RULES_KEY))
    if served is None:
        return RuleSet()
    try:
        return decode_rules(served)
    except AcpDecodeError as e:
        raise StoreError(
            f"the card's access rules cannot be parsed ({e}); the gateway refuses every "
            "connection until they are replaced (`openscws card acp rm --all`)"
        ) from None


def save_rules(store: ResourceStore, rules: RuleSet) -> None:
    store.set_value(RULES_KEY, encode_rules(rules))
