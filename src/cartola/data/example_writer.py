"""ExampleGen's last step without Beam: TFX's hash split, gzipped TFRecord files, the
Examples artifact's properties.

TFX's ExampleGen executors send every record through a Beam pipeline that partitions,
reshuffles and writes it one record at a time. Measured on the 2-CPU development machine at
1M rows, that tail cost ~250 s and ~6 GB of summed RSS under the DirectRunner's
multi-processing mode (~490 s in memory), whatever read the rows. Here a reader yields batches
of serialized examples and this module routes each record with TFX's own partition function
(the same bucket for the same bytes, so splits are those TFX would write), shuffles each split
through scratch files and writes it as gzipped TFRecord files, one per Beam worker of the
run (:func:`shard_count`): one process, a batch or a scratch file in memory at a time. Runs
that name another Beam runner (Flink, Spark, Dataflow) keep TFX's Beam path, which scales
out; so do the settings this writer does not cover.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

import numpy as np
import tensorflow as tf
from tfx.components.example_gen import base_example_gen_executor, utils, write_split
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

# A reader: an input split's pattern -> batches of serialized tf.Examples.
Reader = Callable[[str], Iterable[List[bytes]]]
FILE_NAME = "data_tfrecord-{index:05d}-of-{count:05d}.gz"  # as TFX's WriteSplit names shards
SHUFFLE_BUCKETS = 64  # scratch files per split: 1M rows hold ~4 MB of records each in memory
_GZIP = tf.io.TFRecordOptions(compression_type="GZIP")


def _configs(exec_properties: Dict[str, Any]):
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                              input_config)
    output_config = example_gen_pb2.Output()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY],
                              output_config)
    return input_config, output_config


def unsupported(exec_properties: Dict[str, Any], beam_args: List[str]) -> Optional[str]:
    """Why this writer cannot stand in for TFX's Beam path here, or None when it can."""
    runner = next((arg.split("=", 1)[1] for arg in beam_args
                   if arg.startswith("--runner=")), "DirectRunner")
    if runner not in ("DirectRunner", "direct"):
        return f"runner {runner}"
    output_config = example_gen_pb2.Output()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY],
                              output_config)
    if output_config.split_config.partition_feature_name:
        return "a partition feature"
    payload = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
    if payload not in (None, example_gen_pb2.FORMAT_TF_EXAMPLE):
        return "a payload other than tf.Example"
    return None


def shard_count(beam_args: List[str]) -> int:
    """Files per split: the DirectRunner's worker count in its multi-processing or
    multi-threading mode, else 1. A gzipped file cannot be split, and the components that
    read a split (StatisticsGen, Transform, the Evaluator) give each file to one worker: with
    one file, one of two workers did all the work (measured: one core busy of two)."""
    options = dict(arg.split("=", 1) for arg in beam_args if arg.startswith("--direct_")
                   and "=" in arg)
    if options.get("--direct_running_mode") not in ("multi_processing", "multi_threading"):
        return 1
    try:
        return max(1, int(options.get("--direct_num_workers", "1")))
    except ValueError:
        return 1


def _routed(batches: Iterable[List[bytes]], buckets: List[int],
            split_config) -> Iterator[List[List[bytes]]]:
    """Each batch's records grouped by output split, by TFX's ExampleGen partition function."""
    partition = base_example_gen_executor._PartitionFn  # pylint: disable=protected-access
    for batch in batches:
        groups: List[List[bytes]] = [[] for _ in buckets]
        for record in batch:
            groups[partition(record, len(buckets), buckets, split_config)].append(record)
        yield groups


class _ShuffledSplit:
    """One output split's records in a seeded random order, in bounded memory: scattered at
    random over ``SHUFFLE_BUCKETS`` scratch files as they come, then each file, in random
    order, shuffled in memory and written to the split's gzipped TFRecord file. TFX's Beam
    path reshuffles before writing too; the Trainer's shuffle buffer is far smaller than a
    span, so a file sorted by, say, the label would otherwise train in that order."""

    def __init__(self, folder: str, seed: int):
        local = "://" not in folder
        self._scratch = tempfile.mkdtemp(prefix=".shuffle-", dir=folder if local else None)
        self._files = [open(os.path.join(self._scratch, f"{index:03d}"), "wb")  # pylint: disable=consider-using-with
                       for index in range(SHUFFLE_BUCKETS)]
        self._rng = np.random.default_rng(seed)
        self.count = 0

    def add(self, records: List[bytes]) -> None:
        """Scatter ``records`` over the scratch files."""
        files = self._files
        for record, target in zip(records, self._rng.integers(
                0, SHUFFLE_BUCKETS, len(records)).tolist()):
            files[target].write(len(record).to_bytes(4, "little") + record)
        self.count += len(records)

    def write(self, folder: str, shards: int) -> None:
        """The shuffled records into ``shards`` gzipped TFRecord files in ``folder``: whole
        scratch files dealt round-robin, so each shard holds about as many records."""
        for handle in self._files:
            handle.close()
        with contextlib.ExitStack() as stack:
            writers = [stack.enter_context(tf.io.TFRecordWriter(
                os.path.join(folder, FILE_NAME.format(index=index, count=shards)), _GZIP))
                for index in range(shards)]
            for dealt, index in enumerate(self._rng.permutation(SHUFFLE_BUCKETS).tolist()):
                writer = writers[dealt % shards]
                with open(self._files[index].name, "rb") as handle:
                    data = handle.read()
                records, position = [], 0
                while position < len(data):
                    size = int.from_bytes(data[position:position + 4], "little")
                    records.append(data[position + 4:position + 4 + size])
                    position += 4 + size
                for record in self._rng.permutation(len(records)).tolist():
                    writer.write(records[record])

    def discard(self) -> None:
        """Remove the scratch files."""
        for handle in self._files:
            handle.close()
        shutil.rmtree(self._scratch, ignore_errors=True)


def write_examples(output_dict: Dict[str, List[Any]], exec_properties: Dict[str, Any],
                   read: Reader, shards: int = 1) -> Dict[str, int]:
    """Write the Examples artifact's splits from ``read``, each in ``shards`` files; return
    the rows per split.

    One input split hash-split into the output config's splits, or one output split per
    input split, as TFX's ExampleGen does; each split's records in a seeded random order.
    The artifact gets TFX's split names, payload and file format, plus ``row_count`` and
    ``split_row_counts``."""
    input_config, output_config = _configs(exec_properties)
    examples = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.EXAMPLES_KEY])
    names = utils.generate_output_split_names(input_config, output_config)
    examples.split_names = artifact_utils.encode_split_names(names)
    folders = [artifact_utils.get_split_uri([examples], name) for name in names]
    splits: List[_ShuffledSplit] = []
    try:
        for seed, folder in enumerate(folders):
            tf.io.gfile.makedirs(folder)
            splits.append(_ShuffledSplit(folder, seed))
        if output_config.split_config.splits:
            buckets, total = [], 0
            for split in output_config.split_config.splits:
                total += split.hash_buckets
                buckets.append(total)
            for groups in _routed(read(input_config.splits[0].pattern), buckets,
                                  output_config.split_config):
                for target, records in enumerate(groups):
                    splits[target].add(records)
        else:
            for target, split in enumerate(input_config.splits):
                for batch in read(split.pattern):
                    splits[target].add(batch)
        for split, folder in zip(splits, folders):
            split.write(folder, shards)
    finally:
        for split in splits:
            split.discard()
    counts = {name: split.count for name, split in zip(names, splits)}
    _record(examples, exec_properties, counts)
    logging.info("ExampleGen wrote %s rows per split", counts)
    return counts


def _record(examples, exec_properties: Dict[str, Any], counts: Dict[str, int]) -> None:
    payload = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
    if payload:
        examples_utils.set_payload_format(examples, payload)
    file_format = exec_properties.get(standard_component_specs.OUTPUT_FILE_FORMAT_KEY)
    if file_format:
        examples_utils.set_file_format(examples, write_split.to_file_format_str(file_format))
    record_counts(examples, counts)


def record_counts(examples, counts: Dict[str, int]) -> None:
    """``row_count`` and ``split_row_counts`` on an Examples artifact."""
    examples.set_int_custom_property("row_count", sum(counts.values()))
    examples.set_string_custom_property("split_row_counts", json.dumps(counts))
