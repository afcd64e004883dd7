"""Identifier helpers."""

from __future__ import annotations

import os
import secrets
import threading
import time
import uuid


def new_request_id() -> str:
    return uuid.uuid4().hex


def new_uuid() -> str:
    return str(uuid.uuid4())


def new_token(nbytes: int = 32) -> str:
    """A URL-safe random secret."""
    return secrets.token_urlsafe(nbytes)


class _Uuid7:
    """RFC 9562 version 7 UUIDs: 48 bits of Unix milliseconds, then 12 bits of a counter that
    keeps the ids of one process strictly increasing within a millisecond (started at a random
    value each millisecond, method 1 of the RFC), then 62 random bits. The random bits come from
    the operating system's CSPRNG (``os.urandom``), read 4 KiB at a time rather than in one
    system call per id."""

    _POOL_BYTES = 4096

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """A fresh sequence (and lock: a child process may be forked while another thread holds
        the parent's)."""
        self._lock = threading.Lock()
        self._last_ms = 0
        self._counter = 0
        self._pool = b""  # a forked child must not reuse its parent's random bytes
        self._taken = 0

    def _random(self) -> int:
        """64 random bits (the caller holds the lock)."""
        start = self._taken
        if start + 8 > len(self._pool):
            self._pool, start = os.urandom(self._POOL_BYTES), 0
        self._taken = start + 8
        return int.from_bytes(self._pool[start : start + 8])

    def __call__(self) -> int:
        with self._lock:
            now = time.time_ns() // 1_000_000
            tail = self._random() & 0x3FFF_FFFF_FFFF_FFFF
            if now > self._last_ms:
                self._last_ms = now
                self._counter = tail & 0x7FF  # room for 2048+ more in this millisecond
                tail = self._random() & 0x3FFF_FFFF_FFFF_FFFF
            else:
                self._counter += 1
                if self._counter > 0xFFF:  # 4096 ids in one millisecond: borrow the next one
                    self._last_ms += 1
                    self._counter = 0
            millis, counter = self._last_ms, self._counter
        return (millis << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | tail


_uuid7 = _Uuid7()
if hasattr(os, "register_at_fork"):  # a forked worker starts its own sequence
    os.register_at_fork(after_in_child=_uuid7.reset)


def new_uuid7() -> str:
    """A time-ordered UUID (version 7): rows keyed by it are appended to the end of their B-tree
    indexes instead of landing on a random page each (on a growing orders table a batch of
    inserts then writes about a third as many pages), and ids sort by creation time. Not
    secret: it carries its creation time. For resource ids, never for tokens."""
    text = f"{_uuid7():032x}"  # what str(uuid.UUID(int=...)) gives, without the checks
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
