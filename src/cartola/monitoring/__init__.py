"""Watching the served model: request logs, skew and score drift, notifications."""
