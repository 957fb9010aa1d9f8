"""Example services instrumented with otelkit."""
