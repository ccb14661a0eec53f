"""Hypothesis settings shared by the property tests, bounded so the whole package runs in
seconds: at most 200 examples a property, no per-example deadline (a loaded CI machine must
not turn a slow example into a failure), and no example database written into the tree."""

from __future__ import annotations

from hypothesis import settings

BOUNDED = settings(max_examples=200, deadline=None, database=None)
