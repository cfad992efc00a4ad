"""Errors a user acts on; light to import (no TensorFlow) so CLIs can catch them cheaply."""


class InputDataError(ValueError):
    """The input folder cannot be read as the pipeline's CSV input."""


class DataValidationError(RuntimeError):
    """ExampleValidator found anomalies; the run must not train on this data."""
