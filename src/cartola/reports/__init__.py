"""Reports: the per-run report, the run-history page, the drift section, why nothing was pushed."""
