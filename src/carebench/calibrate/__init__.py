"""Calibration: measure a backend's latency against concurrency, fit the Universal Scalability
Law to it, and state the `carebench serve` flags that make the simulator behave like it."""
