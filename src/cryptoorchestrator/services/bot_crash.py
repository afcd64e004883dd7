"""A test-only crash hook for the order path: ``CO_TEST_CRASH_AT=<point>[:<n>]`` kills the process
(``os._exit(137)``, as ``kill -9`` would leave it: no cleanup, no flush) the ``n``-th time
(default: the first) the order path reaches ``point``. Unset, :func:`crash_point` does nothing
but read one environment variable.

The points, in the order an order meets them (``services/orders.py``):

* ``before_persist``: validated, nothing stored yet;
* ``after_persist``: a live order stored (and its funds locked), not sent;
* ``after_send``: the venue has the order, its answer is not booked;
* ``after_answer``: the answer is booked, the caller (a bot) has not seen it.
"""

from __future__ import annotations

import os
from typing import Final

CRASH_ENV: Final = "CO_TEST_CRASH_AT"
CRASH_POINTS: Final = frozenset({"before_persist", "after_persist", "after_send", "after_answer"})
_reached: dict[str, int] = {}


def crash_point(point: str) -> None:
    """Exit with status 137 at the configured point and count (module docstring)."""
    wanted = os.environ.get(CRASH_ENV)
    if not wanted:
        return
    name, _, count = wanted.partition(":")
    if name != point:
        return
    _reached[point] = _reached.get(point, 0) + 1
    if _reached[point] >= int(count or 1):
        os._exit(137)
