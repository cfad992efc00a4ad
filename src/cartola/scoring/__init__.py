"""Batch scoring of a CSV file, in process or through the REST server (both paths)."""
