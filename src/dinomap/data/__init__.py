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
