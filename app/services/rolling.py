"""Rolling execution: a step run in batches, sized by an expression such as "1 10% 30% 100%".

Each part is a batch size, an absolute count or a percentage of the step's hosts (rounded up);
the last part repeats until every host has had its batch.
"""

from __future__ import annotations

import math
import re

PART = re.compile(r"^(?:(\d+)|(\d+(?:\.\d+)?)%)$")
PARTS_MAX = 100


def parse(expression: str) -> list[tuple[int, bool]]:
    """The parts of an expression as (number, is_percentage); ValueError saying what is wrong."""
    parts = expression.split()
    if not parts:
        raise ValueError("give at least one batch size, such as 1 10% 100%")
    if len(parts) > PARTS_MAX:
        raise ValueError(f"at most {PARTS_MAX} parts")
    parsed = []
    for index, part in enumerate(parts, 1):
        match = PART.match(part)
        if not match:
            raise ValueError(
                f"part {index} ({part!r}) is neither a count such as 5 nor a percentage such as 10%"
            )
        count, percent = match.groups()
        number = float(percent) if percent is not None else int(count)
        if number <= 0 or (percent is not None and number > 100):
            raise ValueError(
                f"part {index} ({part!r}) must be above 0" + (" and at most 100%" if percent else "")
            )
        parsed.append((number, percent is not None))
    return parsed


def batch_sizes(expression: str, host_count: int) -> list[int]:
    """The size of each batch over `host_count` hosts."""
    parts = parse(expression)
    sizes: list[int] = []
    remaining = host_count
    index = 0
    while remaining > 0:
        number, percentage = parts[min(index, len(parts) - 1)]
        size = math.ceil(host_count * number / 100) if percentage else int(number)
        size = min(max(size, 1), remaining)
        sizes.append(size)
        remaining -= size
        index += 1
    return sizes
