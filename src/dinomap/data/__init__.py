"""Image sources and decoding."""

from dinomap.data.decode import DecodeError, decode_image, read_image_file
from dinomap.data.sources import (
    ArraySource,
    FolderSource,
    ImageSource,
    Item,
    ManifestSource,
    cifar10_source,
    demo_source,
    fashion_mnist_source,
    open_source,
)

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
    "open_source",
    "read_image_file",
]
