"""Data gates between runs: drift of this span against the served model's data, train/eval skew."""
