"""Hypothesis settings shared by the property tests, bounded so the whole package runs in
seconds: 200 examples a property (ten times more for the long variants that
`make reliability` selects with CAREBENCH_RELIABILITY_LONG=1), no per-example deadline (a
loaded CI machine must not turn a slow example into a failure), and no example database
written into the tree (a failure prints the example to replay)."""

from __future__ import annotations

import os

from hypothesis import settings

EXAMPLES = 2000 if os.environ.get("CAREBENCH_RELIABILITY_LONG", "") == "1" else 200
BOUNDED = settings(max_examples=EXAMPLES, deadline=None, database=None)
#: For properties whose examples build several full histograms (~20 ms each): half as many.
HEAVY = settings(BOUNDED, max_examples=EXAMPLES // 2)
