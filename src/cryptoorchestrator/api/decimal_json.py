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
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class DecimalJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = json.loads(await self.body(), parse_float=Decimal)
        return self._json


class DecimalJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def decimal_handler(request: Request) -> Response:
            return await handler(DecimalJSONRequest(request.scope, request.receive))

        return decimal_handler
