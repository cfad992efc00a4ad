"""Model registry: the served version, rollback, lineage and run history from ML Metadata."""
