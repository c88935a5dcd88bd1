"""The northbound HTTP API: device twins, subscriptions, MEC 033, health and metrics."""
