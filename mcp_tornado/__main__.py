"""``python -m mcp_tornado``: the same as the ``mcp-tornado`` command."""

from mcp_tornado.cli import main

main()
