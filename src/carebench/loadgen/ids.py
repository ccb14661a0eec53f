"""How the load generator picks patient ids: one fixed id, uniform over N, or Zipf-skewed."""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Callable

from carebench.backends.records import patient_id_for
from carebench.errors import ConfigError

IdChooser = Callable[[], str]
USAGE = (
    "--ids takes fixed:ID, uniform:N or zipf:N[:S] "
    "(e.g. fixed:P12345, uniform:10000, zipf:10000:1.1)"
)


def parse_ids(spec: str, seed: int | None = None) -> IdChooser:
    """A function returning the next patient id according to `spec`."""
    kind, _, rest = spec.partition(":")
    rng = random.Random(seed)
    if kind == "fixed" and rest:
        return itertools.repeat(rest).__next__
    if kind == "uniform":
        n = _count(rest)
        return lambda: patient_id_for(rng.randrange(n))
    if kind == "zipf":
        n_text, _, s_text = rest.partition(":")
        return _zipf(_count(n_text), _exponent(s_text or "1.1"), rng)
    raise ConfigError(f"{USAGE}; got {spec!r}")


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise ConfigError(f"{USAGE}; N must be an integer, got {text!r}") from None
    if n < 1:
        raise ConfigError(f"{USAGE}; N must be >= 1, got {n}")
    return n


def _exponent(text: str) -> float:
    try:
        s = float(text)
    except ValueError:
        raise ConfigError(f"{USAGE}; S must be a number, got {text!r}") from None
    if not 0 < s < math.inf:
        raise ConfigError(f"{USAGE}; S must be a finite number > 0, got {s:g}")
    return s


def _zipf(n: int, s: float, rng: random.Random) -> IdChooser:
    """Rank k (1-based) drawn with probability proportional to 1 / k**s (hot patients)."""
    # k**-s underflows to 0 for a steep S where 1 / k**s would overflow (an OverflowError).
    weights = [k**-s for k in range(1, n + 1)]
    cumulative = list(itertools.accumulate(weights))
    total = cumulative[-1]
    return lambda: patient_id_for(bisect.bisect_left(cumulative, rng.random() * total))
