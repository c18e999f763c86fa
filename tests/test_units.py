"""Units: the calculator's strings must be accelerate's, character for character."""

from __future__ import annotations

import pytest
from accelerate.utils import convert_bytes

from hfmem.units import calculator_units, format_binary, format_count


@pytest.mark.parametrize("size", [0, 1, 512, 1023, 1024, 1536, 1048576000, 28002238976, 28136464384,
                                  28002238976 / 8, 3.5e15, 2**40 - 1, 433249280, 90669056 / 3])
def test_calculator_units_match_accelerate(size):
    assert calculator_units(size) == convert_bytes(size)


def test_seed_table_strings():
    # The seed's Baichuan-7B row (Model Memory Calculator): 26.2 GB total, 1000.0 MB largest layer,
    # from product.md's byte counts (custom code's rotary caches included).
    assert calculator_units(28_136_464_384) == "26.2 GB"
    assert calculator_units(1_048_576_000) == "1000.0 MB"
    assert calculator_units(4 * 28_136_464_384) == "104.82 GB"
    assert calculator_units(28_002_238_976) == "26.08 GB"


def test_binary_and_counts():
    assert format_binary(3 * 2**30) == "3.00 GiB"
    assert format_binary(512) == "512 B"
    assert format_binary(1536) == "1.50 KiB"
    assert format_count(7_000_559_616) == "7,000,559,616 (7.00 B)"
    assert format_count(999) == "999"
