"""The in-process session cache: trusted for its TTL, cleared by any revocation in the process."""

from __future__ import annotations

from datetime import UTC, datetime

from cryptoorchestrator.core.clock import SimClock
from cryptoorchestrator.domain.identity import Role, User
from cryptoorchestrator.services.auth import SessionCache

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def user(user_id: int = 1) -> User:
    return User(
        id=user_id, username="u", email="u@example.com", role=Role.USER, is_active=True, first_name=None,
        last_name=None, totp_enabled=False, created_at=NOW, updated_at=NOW,
    )  # fmt: skip


def test_entries_expire_after_the_ttl():
    clock = SimClock(100.0)
    cache = SessionCache(clock, ttl_seconds=5)
    cache.put("s1", user())
    assert cache.get("s1", 1) == user()
    assert cache.get("s1", 2) is None, "a session id is bound to its user"
    clock.advance(5)
    assert cache.get("s1", 1) is None


def test_invalidate_all_and_disabled_cache():
    clock = SimClock(0.0)
    cache = SessionCache(clock, ttl_seconds=5)
    cache.put("s1", user())
    cache.invalidate_all()
    assert cache.get("s1", 1) is None
    off = SessionCache(clock, ttl_seconds=0)
    off.put("s1", user())
    assert off.get("s1", 1) is None


def test_the_cache_is_bounded():
    cache = SessionCache(SimClock(0.0), ttl_seconds=60, max_entries=3)
    for index in range(5):
        cache.put(f"s{index}", user(index))
    assert cache.get("s0", 0) is None
    assert cache.get("s4", 4) is not None
