"""The data path: forward and tee, headers, exchange to row, SSE assembly, pricing, recorder."""
