"""Password hashing (argon2id through pwdlib) and the password policy."""

from __future__ import annotations

from functools import lru_cache

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 128


class PasswordHasher:
    """argon2id hashing; ``needs_rehash`` tells when stored hashes use older parameters."""

    def __init__(self, *, time_cost: int = 3, memory_kib: int = 65536, parallelism: int = 4) -> None:
        self._argon2 = Argon2Hasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)
        self._hash = PasswordHash((self._argon2,))
        # Verifying against a dummy hash for unknown users keeps login timing uniform.
        self._dummy = self._hash.hash("timing-equaliser-not-a-password")

    def hash(self, password: str) -> str:
        return self._hash.hash(password)

    def verify(self, password: str, hashed: str | None) -> bool:
        if hashed is None:
            self._hash.verify(password, self._dummy)
            return False
        try:
            return self._hash.verify(password, hashed)
        except Exception:  # a malformed stored hash is a failed login, never a 500
            return False

    def needs_rehash(self, hashed: str) -> bool:
        try:
            return bool(self._argon2.check_needs_rehash(hashed))
        except Exception:
            return False


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    # zxcvbn ships a 30,000-entry list of the most common leaked passwords.
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def password_problems(password: str, *, username: str | None = None, email: str | None = None) -> list[str]:
    """Reasons a new password is refused (empty when it is acceptable)."""
    problems: list[str] = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"Password must be at least {MIN_PASSWORD_LENGTH} characters long.")
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(f"Password must be at most {MAX_PASSWORD_LENGTH} characters long.")
    lowered = password.lower()
    if lowered in _common_passwords():
        problems.append("Password is on the list of commonly used passwords; choose another one.")
    if username and lowered == username.lower():
        problems.append("Password must not equal the username.")
    if email and lowered == email.lower():
        problems.append("Password must not equal the email address.")
    return problems
