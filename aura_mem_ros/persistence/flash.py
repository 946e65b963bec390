"""Projected lifetime of a flash device under a steady write load.

Endurance model: a device of ``size_bytes`` rated for ``pe_cycles`` program/erase cycles
absorbs about ``size_bytes * pe_cycles / write_amplification`` bytes before wearing out,
assuming the controller levels wear over the whole device. Real controllers write in pages
(4 KiB or more), so ``write_amplification`` defaults to the page rounding of one small file
write and is left to the caller.
"""

from __future__ import annotations

import math

SECONDS_PER_YEAR = 365.25 * 24 * 3600


def flash_lifetime_s(
    size_bytes: float, pe_cycles: float, bytes_per_s: float, write_amplification: float = 1.0
) -> float:
    """Seconds until the rated endurance is used up at ``bytes_per_s``; inf when nothing writes."""
    if size_bytes <= 0 or pe_cycles <= 0 or write_amplification <= 0:
        raise ValueError("flash size, P/E cycles and write amplification must be positive")
    if bytes_per_s <= 0 or not math.isfinite(bytes_per_s):
        return math.inf
    return size_bytes * pe_cycles / (write_amplification * bytes_per_s)


def lifetime_years(seconds: float) -> float:
    return seconds / SECONDS_PER_YEAR
