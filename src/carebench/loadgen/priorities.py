"""Which X-Request-Priority the load generator sends: none, or a weighted mix of classes."""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Callable

from carebench.errors import ConfigError
from carebench.models import PRIORITIES

PriorityChooser = Callable[[], str | None]
USAGE = "--priorities takes CLASS:WEIGHT pairs, e.g. critical:10,standard:70,batch:20"


def no_priority() -> None:
    """Send no header: the server treats the request as standard."""
    return None


def parse_priorities(spec: str | None, seed: int | None = None) -> PriorityChooser:
    """A function returning the class for the next request, drawn with the given weights."""
    if not spec:
        return no_priority
    names, weights = [], []
    for part in spec.split(","):
        name, _, weight_text = part.strip().partition(":")
        if name not in PRIORITIES:
            raise ConfigError(f"{USAGE}; unknown class {name!r} (valid: {', '.join(PRIORITIES)})")
        try:
            weight = float(weight_text)
        except ValueError:
            raise ConfigError(f"{USAGE}; weight of {name} must be a number") from None
        if not 0 < weight < math.inf:
            raise ConfigError(f"{USAGE}; weight of {name} must be a finite number > 0")
        names.append(name)
        weights.append(weight)
    # Scaled by the largest weight, so that huge weights cannot sum to infinity.
    top = max(weights)
    cumulative = list(itertools.accumulate(weight / top for weight in weights))
    rng = random.Random(seed)
    return lambda: names[bisect.bisect_left(cumulative, rng.random() * cumulative[-1])]
