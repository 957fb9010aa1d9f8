"""The example service's in-memory data."""

from __future__ import annotations

from pydantic import BaseModel


class Course(BaseModel):
    """A course in the catalogue."""

    id: int
    title: str
    enrolled: int = 0


COURSES: dict[int, Course] = {
    1: Course(id=1, title="Observability 101"),
    2: Course(id=2, title="PromQL in practice"),
    3: Course(id=3, title="OpenTelemetry for Python"),
}
