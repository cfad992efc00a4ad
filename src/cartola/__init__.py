"""Cartola PRO propensity pipeline.

TFX 1.16 expects Keras 2 while TF 2.16 ships Keras 3: every process that may run TFX code
imports this package first, so the switch is set before TensorFlow is imported anywhere.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
