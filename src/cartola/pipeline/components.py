"""Custom TFX pieces: the data validation gate and an atomic, integer-versioned Pusher."""
import errno
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, Dict, List

from absl import logging
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.component.experimental.annotations import InputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.utils import io_utils, proto_utils

from cartola.errors import DataValidationError, RunFaultError
from cartola.published.served import after_push, served_version
from cartola.published.versions import model_versions

ANOMALIES_FILE = "SchemaDiff.pb"
# Pusher output property: the served version a blessed model was identical to.
IDENTICAL_TO = "identical_to_version"


def read_anomalies(artifact: types.Artifact) -> Dict[str, anomalies_pb2.Anomalies]:
    """Anomalies per split of an ExampleAnomalies artifact."""
    result = {}
    for split in artifact_utils.decode_split_names(artifact.split_names):
        path = os.path.join(artifact_utils.get_split_uri([artifact], split), ANOMALIES_FILE)
        result[split] = anomalies_pb2.Anomalies.FromString(io_utils.read_bytes_file(path))
    return result


def describe_anomalies(per_split: Dict[str, anomalies_pb2.Anomalies]) -> List[str]:
    """One line per anomaly: split, feature, kind, description."""
    lines = []
    for split, anomalies in sorted(per_split.items()):
        for feature, info in sorted(anomalies.anomaly_info.items()):
            kinds = ", ".join(anomalies_pb2.AnomalyInfo.Type.Name(reason.type)
                              for reason in info.reason) or "UNKNOWN"
            lines.append(f"[{split}] feature {feature!r}: {kinds}: {info.description}")
        if anomalies.HasField("dataset_anomaly_info"):
            info = anomalies.dataset_anomaly_info
            kinds = ", ".join(anomalies_pb2.AnomalyInfo.Type.Name(reason.type)
                              for reason in info.reason) or "UNKNOWN"
            lines.append(f"[{split}] dataset: {kinds}: {info.description}")
    return lines


def label_problems(statistics: types.Artifact, label: str, min_rate: float,
                   max_rate: float) -> List[str]:
    """One line per split whose 0/1 label has a single class or a positive share outside
    [min_rate, max_rate], from StatisticsGen's numeric statistics (mean = positive share)."""
    from tfx.components.statistics_gen import stats_artifact_utils  # pylint: disable=import-outside-toplevel
    lines = []
    for split in artifact_utils.decode_split_names(statistics.split_names):
        stats = stats_artifact_utils.load_statistics(statistics, split).proto().datasets[0]
        feature = next((f for f in stats.features
                        if (f.path.step[0] if f.path.step else f.name) == label), None)
        if feature is None or not feature.HasField("num_stats"):
            continue  # absent or not numeric: the schema check names it
        num = feature.num_stats
        if num.min == num.max:
            lines.append(f"[{split}] label {label!r}: a single class (every example is "
                         f"{num.max:g}); a classifier needs both 0 and 1")
        elif not min_rate <= num.mean <= max_rate:
            lines.append(f"[{split}] label {label!r}: positive share {num.mean:.3f} outside "
                         f"[{min_rate:g}, {max_rate:g}] (config min_positive_rate, "
                         "max_positive_rate)")
    return lines


@component
def DataValidationGate(  # pylint: disable=invalid-name
        anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
        statistics: InputArtifact[standard_artifacts.ExampleStatistics],
        label: Parameter[str], min_positive_rate: Parameter[float],
        max_positive_rate: Parameter[float]) -> None:
    """Fail the run when ExampleValidator recorded any anomaly (it only records them), or the
    label cannot train a classifier."""
    lines = describe_anomalies(read_anomalies(anomalies)) + label_problems(
        statistics, label, min_positive_rate, max_positive_rate)
    if lines:
        raise DataValidationError(
            f"data validation failed with {len(lines)} "
            f"problem{'' if len(lines) == 1 else 's'} (see ExampleValidator output "
            + anomalies.uri + "):\n  " + "\n  ".join(lines))
    logging.info("Data validation passed: no anomalies, both label classes present.")


def _same_model(model_path: Path, version_path: Path) -> bool:
    """SavedModel fingerprints match: the candidate is already served under that version."""
    ours, theirs = model_path / "fingerprint.pb", version_path / "fingerprint.pb"
    return ours.is_file() and theirs.is_file() and ours.read_bytes() == theirs.read_bytes()


def publish_model(model_path: Path, base: Path) -> tuple:
    """Copy a SavedModel to ``base/<n+1>`` atomically; returns (version, pushed).

    The copy goes to a hidden temporary folder (TF Serving ignores non-numeric names) in the
    same file system, then one ``rename`` makes it visible. If another writer took the
    version first, the rename fails and the next number is tried. A model whose fingerprint
    equals an existing version's is not pushed again (a rolled-back model does not come back
    under a new number). The new version becomes the served one.
    """
    base.mkdir(parents=True, exist_ok=True)
    versions = model_versions(base)
    for existing in reversed(versions):
        if _same_model(model_path, base / str(existing)):
            return existing, False
    staging = base / f".staging-{uuid.uuid4().hex}"
    try:
        try:
            shutil.copytree(model_path, staging)
        except OSError as err:  # shutil.Error gathers per-file errors; the first says it
            shutil.rmtree(staging, ignore_errors=True)
            raise RunFaultError(_copy_failure(err, model_path, base)) from None
        version = (versions[-1] if versions else 0) + 1
        while True:
            try:
                os.rename(staging, base / str(version))
                after_push(base, version)
                return version, True
            except OSError:
                if not (base / str(version)).exists():
                    raise
                version += 1
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _copy_failure(err: OSError, model_path: Path, base: Path) -> str:
    """One line: why the copy failed, how much it needed and had, and what is still served."""
    reason = err.strerror or str(err)
    if isinstance(err, shutil.Error) and err.args and err.args[0]:
        # (source, destination, "[Errno 28] No space left on device: path") per file, in
        # walk order; a full disk also fails later files with ENOENT (their folder was
        # never made), so name the full disk when it is among them.
        whys = [str(why) for _, _, why in err.args[0]]
        why = next((w for w in whys if f"[Errno {errno.ENOSPC}]" in w), whys[0])
        found = re.match(r"\[Errno \d+\] ([^:]+)", why)
        reason = found.group(1) if found else why
    needed = sum(f.stat().st_blocks * 512 for f in model_path.rglob("*") if f.is_file())
    free = shutil.disk_usage(base).free
    served = served_version(base)
    return (f"Pusher: cannot copy the model into {base}: {reason} (the model takes "
            f"{_size(needed)} on disk, {_size(free)} free); the partial copy was removed and "
            f"the served version is unchanged ({'version ' + str(served) if served else 'none'})")


def _size(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.0f} KiB"


class AtomicPushExecutor(pusher_executor.Executor):
    """Pusher executor writing ``<base_directory>/<1, 2, ...>`` with an atomic rename."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            logging.info("Model not blessed: serving folder left unchanged.")
            self._MarkNotPushed(model_push)
            return
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        base = Path(destination.filesystem.base_directory)
        version, pushed = publish_model(Path(self.GetModelPath(input_dict)), base)
        if not pushed:
            logging.info("Blessed model is identical to version %d: nothing pushed.", version)
            model_push.set_int_custom_property(IDENTICAL_TO, version)
            self._MarkNotPushed(model_push)
            return
        logging.info("Model pushed to %s", base / str(version))
        self._MarkPushed(model_push, pushed_destination=str(base / str(version)),
                         pushed_version=str(version))
