"""The CSV ExampleGen's Beam-free path writes the examples TFX's Beam path writes."""
from __future__ import annotations

import json

import pytest

tf = pytest.importorskip("tensorflow")

# pylint: disable=wrong-import-position,wrong-import-order
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.example_gen.csv_example_gen import executor as tfx_csv
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts, standard_component_specs as specs
from tfx.utils import proto_utils

from cartola.data import csv_example_gen, example_writer

# Quoted delimiters and newlines, blank lines, empty cells, an int column with one float, an
# integer beyond int64, a column empty in every row, whitespace, underscores, nan/inf, UTF-8.
AWKWARD = (
    'id,n,f,mixed,big,empty,text,ws\n'
    '1,3,0.5,7,12,,"a, b",  4\n'
    '2,,1e39,8,99999999999999999999,,"multi\nline",5 \n'
    '\n'
    '3,-4,-0.0,1.5,13,,São Paulo,1_000\n'
    '4,5,nan,,14,,,\n'
    '5,6,inf,2,15,,"""quoted""",7\n'
)


def _run(tmp_path, name, text, beam, dialect=(",", "."), executor=None, splits=True):
    data = tmp_path / name / "data"
    data.mkdir(parents=True)
    (data / "part.csv").write_text(text, encoding="utf-8")
    output = example_gen_pb2.Output()
    if splits:
        output.split_config.splits.add(name="train", hash_buckets=3)
        output.split_config.splits.add(name="eval", hash_buckets=1)
    props = {
        specs.INPUT_BASE_KEY: str(data),
        specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(example_gen_pb2.Input(
            splits=[example_gen_pb2.Input.Split(name="single_split", pattern="*.csv")])),
        specs.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(output),
        specs.OUTPUT_DATA_FORMAT_KEY: example_gen_pb2.FORMAT_TF_EXAMPLE,
        specs.CUSTOM_CONFIG_KEY: proto_utils.proto_to_json(
            csv_example_gen.dialect_config(*dialect)),
    }
    return written(executor or csv_example_gen.Executor(), props,
                   str(tmp_path / name / "out"), beam)


def written(executor, props, uri: str, beam: bool):
    """Run an ExampleGen executor (its Beam path when ``beam``, else as it chooses): the
    deterministic serialization of each split's examples, sorted, and the artifact."""
    examples = standard_artifacts.Examples()
    examples.uri = uri
    outputs = {specs.EXAMPLES_KEY: [examples]}
    if beam:
        BaseExampleGenExecutor.Do(executor, {}, outputs, props)
    else:
        executor.Do({}, outputs, props)
    found = {}
    for split in json.loads(examples.split_names):
        files = tf.io.gfile.glob(f"{examples.uri}/Split-{split}/*.gz")
        found[split] = sorted(
            tf.train.Example.FromString(record.numpy()).SerializeToString(deterministic=True)
            for record in tf.data.TFRecordDataset(files, compression_type="GZIP"))
    return found, examples


def test_same_examples_and_splits_as_tfx_csv_example_gen(tmp_path):
    tfx_written, _ = _run(tmp_path, "tfx", AWKWARD, beam=True, executor=tfx_csv.Executor())
    ours, artifact = _run(tmp_path, "ours", AWKWARD, beam=False)
    assert ours == tfx_written
    assert sum(len(records) for records in ours.values()) == 5
    assert artifact.get_int_custom_property("row_count") == 5
    assert json.loads(artifact.get_string_custom_property("split_row_counts")) == {
        split: len(records) for split, records in ours.items()}
    assert artifact.get_string_custom_property("payload_format") == "FORMAT_TF_EXAMPLE"
    example = tf.train.Example.FromString(ours["train"][0] if ours["train"] else ours["eval"][0])
    features = example.features.feature
    assert features["n"].HasField("int64_list") and features["mixed"].HasField("float_list")
    assert features["big"].HasField("bytes_list")
    assert features["ws"].HasField("int64_list")  # '  4', '5 ', '1_000': ints to Python, so to TFX
    assert not features["empty"].HasField("kind")  # empty everywhere: a feature with no kind


def test_dialect_and_input_splits_match_the_beam_path(tmp_path):
    text = 'id;preco;nome\n1;3,5;"x;y"\n2;-0,25;z\n3;;w\n4;7;\n'
    beam, _ = _run(tmp_path, "beam", text, beam=True, dialect=(";", ","), splits=False)
    ours, _ = _run(tmp_path, "ours", text, beam=False, dialect=(";", ","), splits=False)
    assert ours == beam and list(ours) == ["single_split"]
    values = sorted(tf.train.Example.FromString(record).features.feature["preco"]
                    .float_list.value[:1][0] for record in ours["single_split"]
                    if tf.train.Example.FromString(record).features.feature["preco"]
                    .float_list.value)
    assert values == [-0.25, 3.5, 7.0]


def test_a_record_with_the_wrong_field_count_names_its_line(tmp_path):
    with pytest.raises(ValueError, match=r"part.csv:3: 2 fields, the header has 3"):
        _run(tmp_path, "bad", "a,b,c\n1,2,3\n4,5\n", beam=False)


def test_other_runners_and_partition_features_keep_the_beam_path():
    output = example_gen_pb2.Output()
    props = {specs.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(output)}
    assert example_writer.unsupported(props, []) is None
    assert example_writer.unsupported(props, ["--direct_num_workers=2"]) is None
    assert example_writer.unsupported(props, ["--runner=FlinkRunner"]) == "runner FlinkRunner"
    output.split_config.partition_feature_name = "id"
    props = {specs.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(output)}
    assert example_writer.unsupported(props, []) == "a partition feature"


def test_shards_follow_the_direct_runners_workers():
    assert example_writer.shard_count([]) == 1
    assert example_writer.shard_count(["--direct_running_mode=in_memory",
                                       "--direct_num_workers=1"]) == 1
    assert example_writer.shard_count(["--direct_running_mode=multi_processing",
                                       "--direct_num_workers=3"]) == 3
    assert example_writer.shard_count(["--direct_num_workers=3",
                                       "--direct_running_mode=multi_threading"]) == 3
    assert example_writer.shard_count(["--direct_running_mode=multi_processing",
                                       "--direct_num_workers=x"]) == 1


def test_a_multi_processing_run_writes_a_file_per_worker_with_the_same_splits(tmp_path):
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor  # pylint: disable=import-outside-toplevel
    text = "id,label\n" + "".join(f"{i},{i % 2}\n" for i in range(2000))
    one, _ = _run(tmp_path, "one", text, beam=False)
    two, _ = _run(tmp_path, "two", text, beam=False, executor=csv_example_gen.Executor(
        BaseBeamExecutor.Context(beam_pipeline_args=[
            "--direct_running_mode=multi_processing", "--direct_num_workers=2"])))
    assert two == one
    for split in ("train", "eval"):
        assert sorted(path.name for path in (tmp_path / "two" / "out" / f"Split-{split}")
                      .glob("*.gz")) == [f"data_tfrecord-0000{i}-of-00002.gz" for i in (0, 1)]


def test_shards_hold_every_record_once_and_about_as_many_each(tmp_path):
    records = [f"record {i}".encode() for i in range(5000)]
    split = example_writer._ShuffledSplit(str(tmp_path), seed=0)  # pylint: disable=protected-access
    try:
        split.add(records)
        split.write(str(tmp_path), 3)
    finally:
        split.discard()
    files = sorted(tf.io.gfile.glob(f"{tmp_path}/*.gz"))
    assert [path.rsplit("/", 1)[-1] for path in files] == [
        f"data_tfrecord-0000{i}-of-00003.gz" for i in range(3)]
    shards = [[r.numpy() for r in tf.data.TFRecordDataset([path], compression_type="GZIP")]
              for path in files]
    assert sorted(sum(shards, [])) == sorted(records)
    assert all(abs(len(shard) - 5000 / 3) < 250 for shard in shards)


def test_each_split_is_written_in_a_seeded_random_order(tmp_path):
    text = "id,label\n" + "".join(f"{i},{i % 2}\n" for i in range(3000))
    orders = []
    for name in ("first", "second"):
        _run(tmp_path, name, text, beam=False)
        files = tf.io.gfile.glob(f"{tmp_path / name}/out/Split-train/*")
        assert [path.rsplit("/", 1)[-1] for path in files] == [
            "data_tfrecord-00000-of-00001.gz"]
        orders.append([tf.train.Example.FromString(record.numpy()).features.feature["id"]
                       .int64_list.value[0]
                       for record in tf.data.TFRecordDataset(files, compression_type="GZIP")])
    assert orders[0] == orders[1]  # the same input, the same files
    assert orders[0] != sorted(orders[0])  # not the input's order
    assert sum(a < b for a, b in zip(orders[0], orders[0][1:])) < 0.6 * len(orders[0])
