"""Features, preprocessing and model of the propensity model (TFX user code)."""
