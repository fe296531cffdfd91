"""The HTTP ceiling: FastAPI answering a constant from an `async def`, nothing else.

Run by uvicorn exactly like the service (one worker, uvloop, httptools, no access log), it shows
what the framework and the server cost per request before any model work.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

ANSWER: dict[str, Any] = {"label": "stayed", "probability": 0.1}

app = FastAPI()


@app.post("/v1/models/{task}/predict")
async def predict(task: str) -> dict[str, Any]:
    return ANSWER


@app.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}
