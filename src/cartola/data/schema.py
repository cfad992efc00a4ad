"""Make the curated schema that ImportSchemaGen feeds to ExampleValidator.

``python -m cartola.data.schema`` infers a schema from the CSV files under the data root with TFDV
(the same inference SchemaGen runs), then tightens it with the rules below and writes
``schema/schema.pbtxt``. Review the diff (``git diff schema/``) before committing: new data is
validated against this file, not against a schema inferred from itself.

Rules: the label is a required int in {0, 1}; a column empty in every row is marked
deprecated (neither validated nor parsed: no model can learn from it); columns that are
always present in the sample
are required; columns that are sometimes missing must still be present in at least half the
fraction seen in the sample (so an all-missing column is an anomaly); numeric columns never
negative in the sample must stay non-negative (except ``allow_negative``, whose negatives
Transform treats as missing) and columns within [0, 1] must stay there; string domains are
dropped (new screen resolutions or categories are not anomalies: Transform has OOV buckets);
a data set needs at least ``min_examples`` rows per split.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterable, Optional

from cartola.config import load_config
from cartola.data.spans import latest_folder

MIN_EXAMPLES = 100


def curate(schema, statistics, label: str, allow_negative: Iterable[str] = (),
           min_examples: int = MIN_EXAMPLES):
    """Apply the module's rules to an inferred schema, in place; returns it."""
    from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=import-outside-toplevel
    stats = {f.path.step[0]: f for f in statistics.datasets[0].features}
    total = statistics.datasets[0].num_examples
    allow_negative = set(allow_negative)
    for feature in schema.feature:
        feature_stats = stats[feature.name]
        common = (feature_stats.num_stats.common_stats if feature_stats.HasField("num_stats")
                  else feature_stats.string_stats.common_stats)
        fraction = common.num_non_missing / total if total else 0.0
        if fraction == 0.0 and feature.name != label:
            feature.lifecycle_stage = schema_pb2.DEPRECATED
            feature.presence.min_count = 0
            feature.presence.min_fraction = 0.0
            feature.ClearField("shape")
            continue
        feature.presence.min_count = 1
        feature.presence.min_fraction = 1.0 if fraction >= 1.0 else round(fraction / 2, 3)
        if fraction < 1.0:
            # Optional: CsvExampleGen writes an empty cell as an empty value list, so zero or
            # one value; Transform parses it as a sparse (VarLen) feature.
            feature.ClearField("shape")
            feature.value_count.min = 0
            feature.value_count.max = 1
        if feature.type == schema_pb2.BYTES:
            feature.ClearField("domain")
            continue
        lowest, highest = feature_stats.num_stats.min, feature_stats.num_stats.max
        bounds = {}
        if lowest >= 0 and feature.name not in allow_negative:
            bounds["min"] = 0
        if 0 <= lowest and highest <= 1:
            bounds["max"] = 1
        if feature.name == label:
            bounds = {"min": 0, "max": 1}
            feature.int_domain.is_categorical = True
        if bounds:
            domain = feature.int_domain if feature.type == schema_pb2.INT else feature.float_domain
            for key, value in bounds.items():
                setattr(domain, key, value)
    del schema.string_domain[:]  # referenced only by the domains cleared above
    schema.dataset_constraints.min_examples_count = min_examples
    return schema


def make_schema(data_dir: Path, label: str, allow_negative: Iterable[str] = ()):
    """Infer (TFDV) and curate a schema from every CSV file in ``data_dir``."""
    import tensorflow_data_validation as tfdv  # pylint: disable=import-outside-toplevel
    files = sorted(data_dir.glob("*.csv"))
    if not files:
        raise FileNotFoundError(f"no CSV files in {data_dir}")
    statistics = tfdv.generate_statistics_from_csv(str(data_dir / "*.csv"))
    schema = tfdv.infer_schema(statistics, infer_feature_shape=True)
    return curate(schema, statistics, label, allow_negative)


def main(argv: Optional[list] = None) -> int:
    """CLI: write the curated schema."""
    config = load_config()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=latest_folder(config.data_dir, config.span_pattern),
                        help="folder of CSV files (default: the latest span, %(default)s)")
    parser.add_argument("--out", type=Path, default=config.path(config.schema_path))
    args = parser.parse_args(argv)
    import tensorflow_data_validation as tfdv  # pylint: disable=import-outside-toplevel
    schema = make_schema(args.data, config.label, allow_negative=config.log_features)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tfdv.write_schema_text(schema, str(args.out))
    print(f"schema written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
