"""Persistence: the virtual card's image on disk and the content-management functions."""

from openscws.store.cardimage import (
    FORMAT_VERSION,
    CardImage,
    CardMeta,
    decode_resource,
    encode_resource,
    validate_path,
)
from openscws.store.content import (
    ResourceRow,
    get_resource,
    guess_content_type,
    install_tree,
    list_resources,
    put_file,
    remove,
)

__all__ = [
    "FORMAT_VERSION",
    "CardImage",
    "CardMeta",
    "ResourceRow",
    "decode_resource",
    "encode_resource",
    "get_resource",
    "guess_content_type",
    "install_tree",
    "list_resources",
    "put_file",
    "remove",
    "validate_path",
]
