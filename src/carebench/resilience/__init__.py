"""Resilience around the backend, combinable with any pattern: retries and a circuit breaker."""
