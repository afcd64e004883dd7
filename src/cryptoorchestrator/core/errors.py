"""The one exception tree of the platform.

Every error says whose fault it is and what to do about it (convention 5 of the architecture
guide): ``retryable`` errors may succeed when tried again later, ``needs_operator`` errors need a
human to fix configuration or the venue, and everything else is the caller's fault. Adapters
translate vendor exceptions into these classes at the boundary; ``api/errors.py`` is the only
place that maps them to HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class CryptoOrchestratorError(Exception):
    """Base of every error the platform raises on purpose."""

    code: ClassVar[str] = "INTERNAL_ERROR"
    http_status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False
    needs_operator: ClassVar[bool] = False
    default_message: ClassVar[str] = "An internal error occurred."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: Mapping[str, Any] | None = None,
        code: str | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details: dict[str, Any] = dict(details or {})
        if code is not None:
            self.code = code  # type: ignore[misc]
        super().__init__(self.message)


# --- the caller's fault -------------------------------------------------------------------


class UserError(CryptoOrchestratorError):
    """The request is wrong; repeating it unchanged will fail again."""

    code = "BAD_REQUEST"
    http_status = 400
    default_message = "The request is invalid."


class ValidationFailed(UserError):
    code = "VALIDATION_ERROR"
    http_status = 422
    default_message = "The request did not pass validation."


class NotFound(UserError):
    code = "NOT_FOUND"
    http_status = 404
    default_message = "The resource was not found."


class Conflict(UserError):
    code = "CONFLICT"
    http_status = 409
    default_message = "The request conflicts with the current state."


class AuthenticationFailed(UserError):
    code = "UNAUTHORIZED"
    http_status = 401
    default_message = "Authentication is required."


class TokenExpired(AuthenticationFailed):
    code = "TOKEN_EXPIRED"
    default_message = "The token has expired."


class InvalidCredentials(AuthenticationFailed):
    code = "INVALID_CREDENTIALS"
    default_message = "The username or password is wrong."


class TwoFactorRequired(AuthenticationFailed):
    code = "TWO_FACTOR_REQUIRED"
    default_message = "This account has two-factor authentication on: send totp_code."


class PermissionDenied(UserError):
    code = "FORBIDDEN"
    http_status = 403
    default_message = "You are not allowed to do this."


class AdminRequired(PermissionDenied):
    code = "ADMIN_ACCESS_REQUIRED"
    default_message = "This route is for administrators."


class RateLimitExceeded(UserError):
    code = "RATE_LIMIT_EXCEEDED"
    http_status = 429
    retryable = True
    default_message = "Too many requests. Please wait before retrying."

    def __init__(
        self,
        message: str | None = None,
        *,
        retry_after: int = 60,
        limit: int = 0,
        reset_at: int = 0,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self.retry_after = max(1, int(retry_after))
        self.limit = limit
        self.reset_at = reset_at
        merged = {"retry_after": self.retry_after, **(details or {})}
        super().__init__(message, details=merged)


class InvalidSymbol(UserError):
    code = "INVALID_SYMBOL"
    http_status = 404
    default_message = "The symbol is not known."


# --- retryable / operator ------------------------------------------------------------------


class TransientError(CryptoOrchestratorError):
    """Temporary failure (network, timeout, overload): retry later with back-off."""

    code = "SERVICE_UNAVAILABLE"
    http_status = 503
    retryable = True
    default_message = "A dependency is temporarily unavailable. Please retry."


class OperatorError(CryptoOrchestratorError):
    """Configuration or venue problem that a human must fix."""

    code = "CONFIGURATION_ERROR"
    http_status = 500
    needs_operator = True
    default_message = "The platform is misconfigured."


class ConfigurationError(OperatorError):
    code = "CONFIGURATION_ERROR"


class StrategyError(CryptoOrchestratorError):
    """User strategy code raised: the guard turns its exception into this."""

    code = "STRATEGY_ERROR"
    http_status = 422
    default_message = "The strategy raised an error."


# --- trading and exchanges -----------------------------------------------------------------


class InsufficientBalance(UserError):
    code = "INSUFFICIENT_BALANCE"
    default_message = "The account does not have enough free balance."


class OrderRejected(UserError):
    code = "ORDER_REJECTED"
    default_message = "The order was rejected."


class InvalidTimeframe(ValidationFailed):
    code = "INVALID_TIMEFRAME"
    default_message = "The timeframe is not supported."


class InvalidDateRange(ValidationFailed):
    code = "INVALID_DATE_RANGE"
    default_message = "The date range is invalid."


class DataValidationError(ValidationFailed):
    """Imported data failed validation; ``details`` names the bad rows."""

    code = "INVALID_DATA"
    default_message = "The data contains invalid rows."


class ExchangeError(CryptoOrchestratorError):
    """The exchange answered with an error that is neither ours nor the user's to fix."""

    code = "EXCHANGE_ERROR"
    http_status = 502
    default_message = "The exchange returned an error."


class ExchangeUnavailable(TransientError):
    """Network failure, timeout, 5xx or maintenance at the exchange: retry with back-off."""

    code = "EXCHANGE_UNAVAILABLE"
    default_message = "The exchange is not reachable right now."


class ExchangeTimeout(ExchangeUnavailable):
    """The request may or may not have reached the exchange: its outcome is unknown."""

    code = "EXCHANGE_TIMEOUT"
    default_message = "The exchange did not answer in time."


class ExchangeRateLimited(TransientError):
    """The exchange throttled us (429/418): wait ``retry_after`` seconds."""

    code = "EXCHANGE_RATE_LIMITED"
    default_message = "The exchange is throttling requests."

    def __init__(
        self,
        message: str | None = None,
        *,
        retry_after: float | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, details={"retry_after": retry_after, **(details or {})})


class ExchangeAuthenticationError(OperatorError):
    """The exchange refused the credentials: the user must fix the API key."""

    code = "EXCHANGE_AUTH_FAILED"
    http_status = 400
    default_message = "The exchange rejected the API credentials."


class ExchangeNotSupported(UserError):
    code = "EXCHANGE_NOT_SUPPORTED"
    default_message = "This exchange is not supported."


class OrderNotFoundOnExchange(NotFound):
    code = "ORDER_NOT_FOUND"
    default_message = "The exchange does not know this order."


class PayloadTooLarge(UserError):
    code = "PAYLOAD_TOO_LARGE"
    http_status = 413
    default_message = "The request is larger than this server accepts."
