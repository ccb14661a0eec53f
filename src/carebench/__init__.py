"""carebench: measure concurrency strategies for latency-critical healthcare APIs."""

__version__ = "0.1.0"
