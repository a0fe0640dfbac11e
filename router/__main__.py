"""``python -m mcp_tornado.router``: the same as ``mcp-tornado router``."""

import sys

from mcp_tornado.cli import main

main(["router", *sys.argv[1:]])
