"""Orchestration: local and one-node runners, Airflow tasks and topology, local Airflow."""
