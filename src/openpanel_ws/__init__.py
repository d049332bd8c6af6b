"""OpenPanel WebSocket API 1.3.0 gateway."""

__version__ = "0.1.0"
