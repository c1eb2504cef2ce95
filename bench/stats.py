"""Small numeric helpers: percentiles, per-second series, a least-squares slope."""

import itertools
from collections.abc import Sequence
from typing import Any


def percentiles(values: Sequence[float], points: Sequence[float] = (50, 95, 99)
                ) -> dict[str, float]:
    """{"p50": ..., ...} in milliseconds for values in seconds (nearest rank); {} if empty."""
    if not values:
        return {}
    ordered = sorted(values)
    last = len(ordered) - 1
    out = {f"p{p:g}": ordered[min(last, round(p / 100 * last))] * 1000 for p in points}
    out["max"] = ordered[-1] * 1000
    out["mean"] = sum(ordered) / len(ordered) * 1000
    return out


def rate_series(counts: Sequence[tuple[float, int]]) -> list[tuple[float, float]]:
    """Cumulative (time, count) samples to (time, rate per second) between samples."""
    series = []
    for (t0, c0), (t1, c1) in itertools.pairwise(counts):
        if t1 > t0:
            series.append((t1, (c1 - c0) / (t1 - t0)))
    return series


def bucket_rates(buckets: Sequence[int], bucket_seconds: float, per: float = 1.0
                 ) -> list[tuple[float, float]]:
    """Counts per small bucket to (end time, rate per second) per `per`-second window."""
    step = max(1, round(per / bucket_seconds))
    return [((i + step) * bucket_seconds, sum(buckets[i:i + step]) / (step * bucket_seconds))
            for i in range(0, len(buckets), step)]


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (0 for fewer than two points)."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var


def rounded(value: Any, digits: int = 3) -> Any:
    """Round floats inside nested dicts/lists for a readable JSON file."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v, digits) for v in value]
    return value
