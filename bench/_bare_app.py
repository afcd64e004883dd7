"""The reference for the API benchmarks: a bare FastAPI app with one route."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/api/v1/health")
async def health() -> dict[str, str]:
    return {"status": "healthy"}
