"""Byte formatting. Everything inside hfmem is an integer number of bytes; units appear only here.

Two styles:
* ``gib`` / ``format_binary``: IEC units (KiB, MiB, GiB = 2**30), used everywhere we speak for ourselves.
* ``calculator_units``: the Model Memory Calculator's style, reproduced from accelerate's
  ``accelerate.utils.other.convert_bytes`` (accelerate 1.x): divide by 1024 until below 1024, label
  bytes/KB/MB/GB/TB/PB, print Python's ``round(x, 2)``. The labels say "GB" but the unit is binary (2**30).
"""

from __future__ import annotations

GiB = 1 << 30
MiB = 1 << 20
KiB = 1 << 10

_CALC_LABELS = ("bytes", "KB", "MB", "GB", "TB")
_IEC_LABELS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def calculator_units(size: float) -> str:
    """Format like accelerate's ``convert_bytes`` so that tables match the calculator character for character."""
    for label in _CALC_LABELS:
        if size < 1024.0:
            return f"{round(size, 2)} {label}"
        size /= 1024.0
    return f"{round(size, 2)} PB"


def format_binary(num_bytes: float, digits: int = 2) -> str:
    """IEC units with a fixed number of decimals: ``format_binary(3 * 2**30) == '3.00 GiB'``."""
    size = float(num_bytes)
    for label in _IEC_LABELS[:-1]:
        if abs(size) < 1024.0:
            return f"{size:.0f} {label}" if label == "B" else f"{size:.{digits}f} {label}"
        size /= 1024.0
    return f"{size:.{digits}f} {_IEC_LABELS[-1]}"


def format_count(n: int) -> str:
    """Thousands separators, and a short form: ``7,000,559,616 (7.00 B)``."""
    for div, suffix in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "K")):
        if n >= div:
            return f"{n:,} ({n / div:.2f} {suffix})"
    return f"{n:,}"


# Explicit units only: decimal SI (KB/MB/GB/TB = 10^3..10^12) or binary IEC (KiB/MiB/GiB/TiB = 2^10..2^40);
# a bare number or a bare "G" is ambiguous and refused.
SIZE_UNITS: dict[str, int] = {
    "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}


def parse_size(spec: str) -> int | None:
    """``'24GiB'`` → 25769803776, ``'80GB'`` → 80000000000. None when ``spec`` is not a number with a unit
    letter sequence at all; ValueError (message names the problem) for a number with an unknown or missing
    unit or a negative size."""
    import re
    from decimal import Decimal

    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", spec or "", re.IGNORECASE)
    if not m:
        return None
    unit = m.group(2).lower()
    if unit not in SIZE_UNITS:
        raise ValueError(f"unit {m.group(2) or '(none)'!r} is ambiguous or unknown: write GB (10^9 bytes) or "
                         "GiB (2^30 bytes), e.g. 80GB or 24GiB; MB/MiB and TB/TiB work too")
    return int(Decimal(m.group(1)) * SIZE_UNITS[unit])
