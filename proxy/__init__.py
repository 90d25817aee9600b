"""relaylog: a self-hosted OpenAI-compatible logging proxy with Helicone-compatible feedback."""

__version__ = "0.1.0"
