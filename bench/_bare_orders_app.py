"""The reference for bench/orders_throughput.py: a bare FastAPI app with one POST route that
validates an order body with pydantic (decimal fields) and answers it as JSON. No auth, no
database, no middleware: what FastAPI and uvicorn cost by themselves."""

from __future__ import annotations

import uuid
from decimal import Decimal

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class OrderIn(BaseModel):
    symbol: str
    side: str
    type: str = "market"
    quantity: Decimal


@app.post("/api/v1/orders", status_code=201)
async def place(order: OrderIn) -> dict[str, object]:
    return {"id": str(uuid.uuid4()), "status": "filled", **order.model_dump(mode="json")}


@app.get("/api/v1/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
