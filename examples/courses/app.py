"""A small FastAPI service instrumented with one line: ``otelkit.instrument(app, ...)``.

Run it: ``uvicorn examples.courses.app:app --port 8000``. With ``OTELKIT_COLLECTOR_URL`` set
it also pushes every request, its health and its active users to the collector.
"""

from __future__ import annotations

import asyncio
import os
import random

from fastapi import FastAPI, HTTPException

import otelkit
from examples.courses.catalogue import COURSES, Course

app = FastAPI(title="courses")
otelkit.instrument(app, service_name=os.environ.get("OTEL_SERVICE_NAME", "courses"))


@app.get("/api/courses")
async def list_courses() -> list[Course]:
    """Every course."""
    return list(COURSES.values())


@app.get("/api/courses/{course_id}")
async def get_course(course_id: int) -> Course:
    """One course, or 404."""
    course = COURSES.get(course_id)
    if course is None:
        raise HTTPException(status_code=404, detail=f"no course {course_id}")
    return course


@app.post("/api/courses/{course_id}/enrol", status_code=201)
async def enrol(course_id: int) -> dict[str, int]:
    """Enrol in a course; reports the new active-user count."""
    course = COURSES.get(course_id)
    if course is None:
        raise HTTPException(status_code=404, detail=f"no course {course_id}")
    course.enrolled += 1
    otelkit.report_active_users(sum(c.enrolled for c in COURSES.values()))
    return {"course_id": course_id, "enrolled": course.enrolled}


@app.get("/api/slow")
async def slow(ms: int = 100) -> dict[str, int]:
    """Answers after ``ms`` milliseconds (at most 2 s), for latency panels and alerts."""
    await asyncio.sleep(min(max(ms, 0), 2_000) / 1000)
    return {"slept_ms": ms}


@app.get("/api/flaky")
async def flaky(failure_rate: float = 0.2) -> dict[str, str]:
    """Fails with 500 at the given rate, for error-ratio panels and alerts."""
    if random.random() < failure_rate:  # noqa: S311 - demo traffic, not cryptography
        raise HTTPException(status_code=500, detail="flaky failure")
    return {"status": "ok"}


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness."""
    return {"status": "ok"}
