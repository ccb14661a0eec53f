"""Charts of a tune or capacity search as PNG bytes, in the style of report/plots.py."""

from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from carebench.report.plots import _legend, _log_ms, _log_ms_axis, _no_data, _plain, _png
from carebench.tuning.documents import CapacityDocument, PatternCapacity, TuneDocument


def tune_png(document: TuneDocument) -> bytes:
    """Goodput (median, whiskers from the lowest to the highest trial) and median p99 of
    successes against the tuned setting, the target drawn and the best starred."""
    figure = Figure(figsize=(12, 4.5), layout="constrained")
    goodput, latency = figure.subplots(1, 2, sharex=True)
    candidates = document["candidates"]
    values = [c["value"] for c in candidates]
    medians = [c["goodput"]["median"] for c in candidates]
    low = [m - c["goodput"]["min"] for m, c in zip(medians, candidates, strict=True)]
    high = [c["goodput"]["max"] - m for m, c in zip(medians, candidates, strict=True)]
    goodput.errorbar(values, medians, yerr=[low, high], marker="o", capsize=3, color="C0")
    p99 = [(c["value"], c["percentile_ms"]["median"]) for c in candidates if c["percentile_ms"]]
    if p99:
        latency.plot([v for v, _ in p99], [_log_ms(ms) for _, ms in p99], marker="o", color="C1")
        _log_ms_axis(latency)
    target = document["target_p99_ms"]
    latency.axhline(target, color="#d62728", linestyle="--", label=f"target {target:g} ms")
    best = document["best"]
    if best is not None:
        goodput.plot([best["value"]], [best["goodput"]["median"]], marker="*", markersize=16,
                     color="C2", linestyle="none", label=f"best {best['value']:g}")  # fmt: skip
        if best["percentile_ms"]:
            latency.plot([best["value"]], [_log_ms(best["percentile_ms"]["median"])],
                         marker="*", markersize=16, color="C2", linestyle="none")  # fmt: skip
    flag = document["parameter"]["flag"]
    positive = bool(values) and min(values) > 0 and max(values) / min(values) >= 10
    for axes, label, title in (
        (goodput, "successful req/s", "Goodput (median, whiskers: min..max of the trials)"),
        (latency, "p99 of successes (ms)", "p99 of successes (median of the trials)"),
    ):
        if positive:
            axes.set_xscale("log")
        axes.set_xlabel(_plain(flag))
        axes.set_ylabel(label)
        axes.set_title(title, fontsize=10)
        axes.grid(True, which="both", alpha=0.3)
        _legend(axes, loc="best")
    figure.suptitle(_plain(f"tune {document['pattern']} {flag}"))
    return _png(figure)


def capacity_png(document: CapacityDocument) -> bytes:
    """Left: each probe's rate against its latency percentile (o passed, x failed), the SLO
    drawn and each capacity starred. Right: the rate of each probe in the order run."""
    figure = Figure(figsize=(13, 5), layout="constrained")
    latency, path = figure.subplots(1, 2)
    slo = document["slo"]
    for index, result in enumerate(document["patterns"]):
        _pattern_probes(latency, path, result, f"C{index % 10}")
    if not latency.lines:
        _no_data(latency, "no probe had successes")
    else:
        _log_ms_axis(latency)
        latency.set_xscale("log")
    latency.axhline(slo["threshold_ms"], color="#d62728", linestyle="--",
                    label=f"SLO {slo['percentile']} {slo['threshold_ms']:g} ms")  # fmt: skip
    latency.set_xlabel("rate probed (req/s)")
    latency.set_ylabel(f"{slo['percentile']} of successes (ms, median of trials)")
    latency.set_title("Probes: o passed, x failed, * capacity", fontsize=10)
    path.set_yscale("log")
    path.set_xlabel("probe")
    path.set_ylabel("rate probed (req/s)")
    path.set_title("The search: doubling, then bisection", fontsize=10)
    for axes in (latency, path):
        axes.grid(True, which="both", alpha=0.3)
    _legend(latency, loc="upper left")
    figure.suptitle(_plain(f"capacity within {slo['text']}"))
    return _png(figure)


def _pattern_probes(latency: Axes, path: Axes, result: PatternCapacity, colour: str) -> None:
    probes = result["probes"]
    name = _plain(result["pattern"])
    path.plot(range(1, len(probes) + 1), [p["rate"] for p in probes], color=colour,
              marker="o", label=name)  # fmt: skip
    seen = sorted((p["rate"], p["percentile_ms"]) for p in probes if p["percentile_ms"])
    if seen:
        latency.plot([r for r, _ in seen], [_log_ms(ms) for _, ms in seen], color=colour,
                     alpha=0.5, label=name)  # fmt: skip
    for probe in probes:
        if probe["percentile_ms"] is not None:
            latency.plot([probe["rate"]], [_log_ms(probe["percentile_ms"])], color=colour,
                         marker="o" if probe["passed"] else "x", linestyle="none")  # fmt: skip
    capacity, at = result["capacity_per_second"], result["percentile_ms_at_capacity"]
    if capacity is not None and at is not None:
        latency.plot([capacity], [_log_ms(at)], marker="*", markersize=16, color=colour,
                     linestyle="none")  # fmt: skip
    _legend(path, loc="lower right")
