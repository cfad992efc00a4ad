"""The serving folder on disk: integer model versions and the served pin (no TensorFlow)."""
