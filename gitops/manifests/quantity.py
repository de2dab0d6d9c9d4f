"""Kubernetes resource quantities (``500m``, ``2``, ``4Gi``, ``129e6``) as exact integers."""

from __future__ import annotations

import math
import re
from decimal import Decimal

MAX_CPU_MILLIS = 1024 * 1000
MAX_MEMORY_BYTES = 64 * 1024**4
MAX_GPUS = 64
MAX_STORAGE_BYTES = 1024**6

_QUANTITY = re.compile(r"([+-]?)(\d+(?:\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d{1,3})?\Z")
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def parse_quantity(value: object) -> Decimal:
    """Exact value of a quantity given as YAML string or number; ValueError if it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"must be a quantity such as '500m', '2' or '4Gi', not {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be a finite quantity, not {value}")
    text = str(value).strip() if isinstance(value, str) else repr(value)
    match = _QUANTITY.match(text) if len(text) <= 64 else None
    if match is None:
        raise ValueError(f"'{text}' is not a quantity; write e.g. '500m', '2', '512Mi' or '4Gi'")
    sign, number, suffix = match.groups()
    amount = Decimal(number)
    if sign == "-" and amount != 0:
        raise ValueError(f"'{text}' is negative; quantities must be zero or more")
    suffix = suffix or ""
    if suffix in _BINARY:
        return amount * (1 << (10 * _BINARY[suffix]))
    exponent = int(suffix[1:]) if suffix[:1] in ("e", "E") else _DECIMAL[suffix]
    return amount.scaleb(exponent)


def cpu_millis(value: object) -> int:
    """CPU quantity in millicores, rounded up as Kubernetes does (``0.5`` -> 500)."""
    millis = math.ceil(parse_quantity(value) * 1000)
    if millis > MAX_CPU_MILLIS:
        raise ValueError(f"cpu '{value}' is over {MAX_CPU_MILLIS // 1000} cores; is a unit missing ('500m')?")
    return millis


def milli_units(value: object) -> int:
    """A plain quantity in thousandths, rounded up (``60`` -> 60000, ``500m`` -> 500)."""
    millis = math.ceil(parse_quantity(value) * 1000)
    if millis > MAX_CPU_MILLIS:
        raise ValueError(f"'{value}' is over {MAX_CPU_MILLIS // 1000}")
    return millis


def memory_bytes(value: object) -> int:
    """Memory quantity in bytes, rounded up (``4Gi`` -> 4294967296)."""
    amount = parse_quantity(value)
    if amount > MAX_MEMORY_BYTES:
        raise ValueError(f"memory '{value}' is over 64Ti; is the unit right ('512Mi', '4Gi')?")
    return math.ceil(amount)


def storage_bytes(value: object) -> int:
    """Storage quantity in bytes, rounded up (``20Gi`` -> 21474836480)."""
    amount = parse_quantity(value)
    if amount > MAX_STORAGE_BYTES:
        raise ValueError(f"storage '{value}' is over 1Ei; is the unit right ('10Gi', '2Ti')?")
    return math.ceil(amount)


def gpu_count(value: object) -> int:
    """Whole number of GPUs (extended resources cannot be fractional)."""
    amount = parse_quantity(value)
    if amount != amount.to_integral_value():
        raise ValueError(f"GPU count '{value}' must be a whole number")
    if amount > MAX_GPUS:
        raise ValueError(f"GPU count '{value}' is over {MAX_GPUS} per container")
    return int(amount)
