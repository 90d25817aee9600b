"""The management API: Helicone-compatible feedback, scores, query, export and datasets."""
