"""Tests that drive the real kubernetes client against the fake API server."""
