"""``replace`` for the frozen dataclasses of the domain, three to eight times cheaper than
:func:`dataclasses.replace`.

``dataclasses.replace`` reads every field with ``getattr`` into a keyword dictionary and calls the
generated ``__init__``, which for a frozen class sets each field through
``object.__setattr__``: about 12 µs for an :class:`~cryptoorchestrator.domain.orders.Order` of 30
fields, and a paper order is replaced seven times on its way through the matching engine, the
state machine and the booking. Here a class whose fields are all set by ``__init__`` and that
has no ``__post_init__`` is copied directly:

* an instance with a ``__dict__`` (the hot records, ``Order``, ``Position``, ``Fill``, are
  declared without slots for this) is copied as its dictionary, updated with the changes
  (about 1.3 µs for an ``Order``);
* a slotted instance through a function generated for its class on first use, which copies
  the fields straight into a new instance (about 5 µs for 30 fields).

Both give what ``dataclasses.replace`` gives (a new instance, the given fields changed, an
unknown field a ``TypeError``); any other dataclass goes to ``dataclasses.replace`` itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_COPIERS: dict[type, Callable[[Any, dict[str, Any]], Any] | None] = {}
_new = object.__new__
_set = object.__setattr__


def _copier(cls: type) -> Callable[[Any, dict[str, Any]], Any] | None:
    fields = dataclasses.fields(cls)
    plain = all(f.init and f._field_type is dataclasses._FIELD for f in fields)  # type: ignore[attr-defined]
    if not plain or hasattr(cls, "__post_init__"):
        return None
    if not hasattr(cls, "__slots__"):
        return _dict_copier(cls, frozenset(f.name for f in fields))
    lines = ["def copy(obj, changes):", "    new = _new(_cls)"]
    for f in fields:
        name = f.name
        lines.append(f"    _set(new, {name!r}, changes.pop({name!r}) if {name!r} in changes else obj.{name})")
    lines += [
        "    if changes:",
        "        raise TypeError(f'{_cls.__name__} has no field(s) {sorted(changes)}')",
        "    return new",
    ]
    namespace: dict[str, Any] = {"_new": _new, "_set": _set, "_cls": cls}
    exec("\n".join(lines), namespace)  # noqa: S102 - source built from the class's own field names
    return namespace["copy"]  # type: ignore[no-any-return]


def _dict_copier(cls: type, names: frozenset[str]) -> Callable[[Any, dict[str, Any]], Any]:
    def copy(obj: Any, changes: dict[str, Any]) -> Any:
        values = obj.__dict__.copy()
        if changes:
            if not changes.keys() <= names:
                raise TypeError(f"{cls.__name__} has no field(s) {sorted(changes.keys() - names)}")
            values.update(changes)
        new: Any = _new(cls)
        _set(new, "__dict__", values)
        return new

    return copy


def replace(obj: T, /, **changes: Any) -> T:
    """``dataclasses.replace(obj, **changes)``, fast for plain frozen dataclasses."""
    cls = type(obj)
    try:
        copier = _COPIERS[cls]
    except KeyError:
        copier = _COPIERS[cls] = _copier(cls)
    if copier is None:
        return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
    return copier(obj, changes)  # type: ignore[no-any-return]
