"""Errors a user acts on; light to import (no TensorFlow) so CLIs can catch them cheaply."""
from __future__ import annotations

# What stopped a run on its data; the names are cartola.monitoring.notify's events.
SCHEMA_GATE = "data_rejected"
DRIFT_GATE = "drift_stop"


class InputDataError(ValueError):
    """The input folder cannot be read as the pipeline's CSV input."""


class RunFaultError(RuntimeError):
    """Something under the run failed (a database gone, a full disk), not its input: the
    message is one line naming it, and the run left nothing half-written. Retrying once the
    fault is gone is safe."""


class DataValidationError(RuntimeError):
    """ExampleValidator or the drift gate found problems; the run must not train on this data.

    ``kind`` says which gate (:data:`SCHEMA_GATE` or :data:`DRIFT_GATE`), so a caller can tell a
    person the right thing.
    """

    def __init__(self, message: str = "", kind: str = SCHEMA_GATE) -> None:
        super().__init__(message)
        self.kind = kind

    def __reduce__(self):
        # Keep ``kind`` when the error crosses a process boundary (Beam, multiprocessing).
        return type(self), (str(self), self.kind)
