"""The one place that maps errors to HTTP, always in the contract's error envelope.

``{"error": {"code", "message", "status_code", "details", "request_id"}}``
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cryptoorchestrator.core.errors import CryptoOrchestratorError, RateLimitExceeded

_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
}


def envelope(
    status_code: int,
    code: str,
    message: str,
    *,
    request_id: str | None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "status_code": status_code,
            "details": details or {},
            "request_id": request_id,
        }
    }


def error_response(
    status_code: int,
    code: str,
    message: str,
    *,
    request_id: str | None,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = envelope(status_code, code, message, request_id=request_id, details=details)
    return JSONResponse(jsonable_encoder(body), status_code=status_code, headers=headers)


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


async def _platform_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CryptoOrchestratorError)
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimitExceeded):
        headers["Retry-After"] = str(exc.retry_after)
        if exc.limit:
            headers["X-RateLimit-Limit"] = str(exc.limit)
            headers["X-RateLimit-Remaining"] = "0"
            headers["X-RateLimit-Reset"] = str(exc.reset_at)
    status = exc.http_status
    message = exc.message
    if status >= 500 and exc.needs_operator:
        # Operator errors are logged in full; the client gets the message, never internals.
        request.app.state.logger.error("operator_error", code=exc.code, message=exc.message)
    return error_response(
        status, exc.code, message, request_id=_request_id(request), details=exc.details, headers=headers
    )


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "loc": list(error.get("loc", ())),
            "msg": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        for error in exc.errors()
    ]
    first = errors[0] if errors else None
    message = "The request did not pass validation."
    if first:
        where = ".".join(str(part) for part in first["loc"] if part != "body")
        message = f"{where}: {first['msg']}" if where else first["msg"]
    return error_response(
        422, "VALIDATION_ERROR", message, request_id=_request_id(request), details={"errors": errors}
    )


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    code = _HTTP_CODES.get(status, "HTTP_ERROR")
    if status == 404:
        message = f"No route matches {request.method} {request.url.path}."
    elif status == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}."
    else:
        message = str(exc.detail)
    headers = dict(exc.headers or {})
    return error_response(status, code, message, request_id=_request_id(request), headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(CryptoOrchestratorError, _platform_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
