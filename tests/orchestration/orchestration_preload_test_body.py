"""Run in a fresh interpreter by test_preload.py: preload, fork, then break the preload.

Prints one JSON line: the preload's fork-safety report, what a forked child saw and did,
and whether a preload after TensorFlow's runtime started is refused.
"""
import json
import os
import sys

from cartola.orchestration import preload

report = preload.preload()
read_fd, write_fd = os.pipe()
pid = os.fork()
if pid == 0:  # the child: what a task forked from a warm worker does
    os.close(read_fd)
    child = {"imported": "cartola.pipeline.definition" in sys.modules,
             "runtime_before": preload.tensorflow_runtime_started()}
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    child["sum"] = float(tf.reduce_sum(tf.constant([1.0, 2.0, 3.0])).numpy())
    child["runtime_after"] = preload.tensorflow_runtime_started()
    os.write(write_fd, json.dumps(child).encode())
    os._exit(0)  # pylint: disable=protected-access
os.close(write_fd)
with os.fdopen(read_fd) as pipe:
    child = json.loads(pipe.read() or "{}")
_, status = os.waitpid(pid, 0)
parent_runtime_after_fork = preload.tensorflow_runtime_started()

import tensorflow as tf  # pylint: disable=wrong-import-position,wrong-import-order
tf.constant(1.0) + 1.0  # pylint: disable=expression-not-assigned
preload._DONE.clear()  # pylint: disable=protected-access


def refusal() -> str:
    """The error of a preload in a process whose TensorFlow runtime is up ('' if none)."""
    try:
        preload.preload()
    except RuntimeError as err:
        return str(err)
    return ""


print("RESULT " + json.dumps({"report": report, "child": child, "child_status": status,
                              "parent_runtime_after_fork": parent_runtime_after_fork,
                              "refused": refusal()}))
