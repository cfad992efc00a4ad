"""Why a pipeline run pushed no model: the blessing thresholds it failed, with their values,
or the served version its model is identical to. Read from the run's artifacts in ML
Metadata, for the ``cartola run`` summary and the Airflow status task."""
from __future__ import annotations

from typing import List, Optional

from cartola.config import Config


def _threshold_text(failure) -> str:
    """'below the floor 0.4' or 'changed by -0.031 against the baseline; allowed -0.01'."""
    key, threshold = failure.metric_key, failure.metric_threshold
    value = failure.metric_value.double_value.value
    name = key.name
    if key.is_diff:
        bound = threshold.change_threshold.absolute.value
        return f"{name} changed by {value:+.4f} against the baseline model; allowed {bound:+g}"
    bounds = threshold.value_threshold
    if bounds.HasField("lower_bound") and value < bounds.lower_bound.value:
        return f"{name} {value:.4f} is below the floor {bounds.lower_bound.value:g}"
    if bounds.HasField("upper_bound") and value > bounds.upper_bound.value:
        return f"{name} {value:.4f} is above the ceiling {bounds.upper_bound.value:g}"
    return f"{name} {value:.4f}: {failure.message}".strip()


def failed_thresholds(evaluation_uri: str) -> List[str]:
    """The Evaluator's failed thresholds, one line each (empty: it blessed the model)."""
    import tensorflow_model_analysis as tfma  # pylint: disable=import-outside-toplevel
    validation = tfma.load_validation_result(evaluation_uri)
    lines = []
    for per_slice in validation.metric_validations_per_slice:
        for failure in per_slice.failures:
            lines.append(_threshold_text(failure))
    if not lines and not validation.validation_ok:
        lines = [f"the Evaluator did not bless it (see {evaluation_uri}/validations)"]
    return lines


def why_not_pushed(config: Config, run_id: Optional[str] = None) -> str:
    """One line saying why the run (default: the latest) pushed nothing."""
    # pylint: disable=import-outside-toplevel
    from cartola.pipeline.components import IDENTICAL_TO
    from cartola.registry.runs import custom_property, load_run
    from cartola.published.served import served_version
    run = load_run(config, run_id)
    pushed = run.outputs.get(("Pusher", "pushed_model"))
    served = served_version(config.model_serving_dir)
    not_served = ", which is not served (rolled back); it is not pushed again"
    identical = custom_property(pushed, IDENTICAL_TO)
    if run.state("Pusher") == "CACHED" and custom_property(pushed, "pushed") == 1:
        version = int(custom_property(pushed, "pushed_version"))
        return ("the Pusher's inputs equal an earlier run's (cached): its model is version "
                f"{version}" + ("" if version == served else not_served))
    if identical is not None:
        if identical == served:
            return f"the blessed model is identical to the served version {identical}"
        return f"the blessed model is identical to version {identical}{not_served}"
    evaluation = run.output_uri("Evaluator", "evaluation")
    if evaluation is None:
        return "the Evaluator did not run"
    if custom_property(run.outputs.get(("Evaluator", "blessing")), "blessed") == 1:
        return "blessed, but the Pusher did not push (see its log)"
    return "not blessed: " + "; ".join(failed_thresholds(evaluation))
