"""An unmodified FastAPI app (no otelkit import) for the zero-code test."""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()


@app.get("/items/{item_id}")
async def get_item(item_id: int) -> dict[str, int]:
    """One item."""
    return {"item_id": item_id}
