"""Exact decimals from JSON request bodies.

The contract: "numbers are read as their exact decimal text, never through a binary float".
Starlette's ``Request.json`` uses ``json.loads``, which turns ``0.123456789012345678`` into the
nearest float. Routers that take money (orders, positions, rebalance...) use
:class:`DecimalJSONRoute`, whose requests parse JSON numbers with ``parse_float=Decimal``; the
pydantic models then receive the exact value. Other routes keep plain floats (their JSON
columns could not store a ``Decimal``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Coroutine
from decimal import Decimal
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class DecimalJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = json.loads(await self.body(), parse_float=Decimal)
        return self._json


#: An endpoint's shortcut past FastAPI's request handling for its common case: it answers, or
#: returns None and the request goes through FastAPI as usual (see ``DecimalJSONRoute``).
FastPath = Callable[[Request], Awaitable[Response | None]]


class DecimalJSONRoute(APIRoute):
    """Routes whose JSON numbers are read as ``Decimal``.

    An endpoint may carry a ``fast_path`` attribute (a :data:`FastPath`): it is tried first with
    the same request object and answers the requests it is sure of (an authenticated caller, a
    JSON body its model accepts) without FastAPI's per-request dependency solving, a quarter of
    an order's time in the API. Anything else it returns None for, and FastAPI handles the
    request from the start (the body it read is kept on the request), so every error answer,
    its order (authentication before the body) and the OpenAPI description stay FastAPI's."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        fast: FastPath | None = getattr(self.endpoint, "fast_path", None)

        async def decimal_handler(request: Request) -> Response:
            decimal_request = DecimalJSONRequest(request.scope, request.receive)
            if fast is not None:
                response = await fast(decimal_request)
                if response is not None:
                    return response
            return await handler(decimal_request)

        return decimal_handler
