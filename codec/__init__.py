"""PILC-style learned lossless image codec (no Ray, S3 or web imports here)."""

from codec.api import (
    decode,
    decode_batch,
    decode_image,
    decode_image_batch,
    encode,
    encode_batch,
    info,
)
from codec.errors import CodecError
from codec.imagefile import RasterImage, load_image, to_png_bytes

__all__ = [
    "CodecError",
    "RasterImage",
    "decode",
    "decode_batch",
    "decode_image",
    "decode_image_batch",
    "encode",
    "encode_batch",
    "info",
    "load_image",
    "to_png_bytes",
]
