"""A small course catalogue service, instrumented with one line."""
