"""Tests of the shipped stack: Prometheus config and rules, Grafana provisioning, compose."""
