"""The codec's single exception type: every malformed, truncated or hostile input raises it."""


class CodecError(ValueError):
    """Raised for any blob or image the codec cannot encode or decode exactly."""
