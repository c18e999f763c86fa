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
