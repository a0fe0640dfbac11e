"""Load benchmarks for servers speaking the MCP signaling protocol (see bench/README.md)."""

__version__ = "0.1.0"
