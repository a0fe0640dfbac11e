"""mcp-tornado: a multi-process WebRTC signaling server (Tornado workers + a ZeroMQ router)."""

__version__ = "0.1.0"
