"""The mcp-tornado router: one process that owns room membership for every worker."""
