"""Hypothesis strategies for SyncML DM element trees (shared by the codec tests)."""

from __future__ import annotations

from hypothesis import strategies as st

from openscws.dm.element import Element
from openscws.dm.wbxml import CODE_PAGES

TAGS = [(page.ns, tag) for page in CODE_PAGES.values() for tag in page.tags.values()]

# XML 1.0 characters (no control characters but TAB/LF/CR, no surrogates, no NUL).
xml_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff")
    | st.sampled_from("\t\n\r"),
    min_size=1,
    max_size=20,
)


def _leaf(text: st.SearchStrategy[str]) -> st.SearchStrategy[Element]:
    return st.builds(
        lambda nt, t: Element(nt[1], nt[0], (t,) if t else ()),
        st.sampled_from(TAGS),
        st.none() | text,
    )


def trees(text: st.SearchStrategy[str] = xml_text) -> st.SearchStrategy[Element]:
    return st.recursive(
        _leaf(text),
        lambda kids: st.builds(
            lambda nt, c: Element(nt[1], nt[0], tuple(c)),
            st.sampled_from(TAGS),
            st.lists(kids, min_size=1, max_size=4),
        ),
        max_leaves=15,
    )
