"""Human formatting of ages, byte counts and round-trip times."""

from __future__ import annotations


def format_age(seconds: int | None) -> str:
    """12s, 3m 05s, 2h 07m, 4d 03h."""
    if seconds is None:
        return "never"
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600:02d}h"


def format_bytes(n: int) -> str:
    """1023 B, 1.5 KiB, 12.0 MiB."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def format_rtt(ms: float | None) -> str:
    if ms is None:
        return "ok"
    return f"ok {ms:.2f} ms" if ms < 1 else f"ok {ms:.1f} ms" if ms < 100 else f"ok {ms:.0f} ms"
