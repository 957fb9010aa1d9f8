"""An unmodified FastAPI service, for zero-code instrumentation."""
