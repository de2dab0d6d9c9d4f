"""Kubernetes quantities to exact integers."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitops.manifests.quantity import cpu_millis, gpu_count, memory_bytes


@pytest.mark.parametrize(
    ("value", "millis"),
    [("500m", 500), ("2", 2000), (2, 2000), (0.5, 500), ("1.5", 1500), ("0.1", 100), ("1m", 1), ("0", 0), ("100u", 1)],
)
def test_cpu(value: object, millis: int) -> None:
    assert cpu_millis(value) == millis


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("4Gi", 4 * 1024**3),
        ("512M", 512 * 10**6),
        (128974848, 128974848),
        ("129e6", 129 * 10**6),
        ("1k", 1000),
        ("1Ki", 1024),
        ("0.25Gi", 1024**3 // 4),
        ("123Mi", 123 * 1024**2),
        ("1.5", 2),
    ],
)
def test_memory(value: object, size: int) -> None:
    assert memory_bytes(value) == size


@pytest.mark.parametrize(
    ("parse", "value", "words"),
    [
        (cpu_millis, "abc", "not a quantity"),
        (cpu_millis, "-1", "negative"),
        (cpu_millis, "2000", "over 1024 cores"),
        (cpu_millis, float("nan"), "finite"),
        (cpu_millis, True, "not bool"),
        (cpu_millis, None, "not NoneType"),
        (memory_bytes, "-1", "negative"),
        (memory_bytes, -1, "negative"),
        (memory_bytes, "65Ti", "over 64Ti"),
        (memory_bytes, "1e999", "over 64Ti"),
        (memory_bytes, "4 Gi", "not a quantity"),
        (memory_bytes, "4GB", "not a quantity"),
        (gpu_count, "0.5", "whole number"),
        (gpu_count, "100", "over 64"),
    ],
)
def test_refused(parse: object, value: object, words: str) -> None:
    assert callable(parse)
    with pytest.raises(ValueError, match=words):
        parse(value)


@given(st.text(max_size=40) | st.integers() | st.floats())
def test_any_input_gives_a_number_or_value_error(value: object) -> None:
    for parse in (cpu_millis, memory_bytes, gpu_count):
        with contextlib.suppress(ValueError):
            assert parse(value) >= 0
