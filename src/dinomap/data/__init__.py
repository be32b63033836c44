"""Image sources and decoding."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dinomap._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover - for type checkers; at run time each name loads on use
    from dinomap.data.decode import DecodeError, decode_image, read_image_file
    from dinomap.data.manifest import ManifestSource
    from dinomap.data.open import open_source
    from dinomap.data.sources import (
        ArraySource,
        FolderSource,
        ImageSource,
        Item,
        cifar10_source,
        demo_source,
        fashion_mnist_source,
    )
    from dinomap.data.thumbnails import image_loader, load_thumbnail

__all__ = [
    "ArraySource",
    "DecodeError",
    "FolderSource",
    "ImageSource",
    "Item",
    "ManifestSource",
    "cifar10_source",
    "decode_image",
    "demo_source",
    "fashion_mnist_source",
    "image_loader",
    "load_thumbnail",
    "open_source",
    "read_image_file",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DecodeError": "decode",
        "decode_image": "decode",
        "read_image_file": "decode",
        "ArraySource": "sources",
        "FolderSource": "sources",
        "ImageSource": "sources",
        "Item": "sources",
        "ManifestSource": "manifest",
        "cifar10_source": "sources",
        "demo_source": "sources",
        "fashion_mnist_source": "sources",
        "open_source": "open",
        "image_loader": "thumbnails",
        "load_thumbnail": "thumbnails",
    },
)
