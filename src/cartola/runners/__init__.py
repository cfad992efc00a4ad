"""Runners of the pipeline: local (LocalDagRunner) and Airflow (one node per task)."""
