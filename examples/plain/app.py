"""An unmodified FastAPI app: no otelkit import. ``opentelemetry-instrument`` instruments it."""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI(title="plain")


@app.get("/items/{item_id}")
async def get_item(item_id: int) -> dict[str, int]:
    """One item."""
    return {"item_id": item_id}


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness."""
    return {"status": "ok"}
