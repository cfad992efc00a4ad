"""Orchestration: local runner, one-node runner, Airflow task callables and topology, local Airflow profiles."""
