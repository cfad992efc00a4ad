"""Run one node of the compiled pipeline under a given pipeline run id.

This is what each Airflow task does (the loop body of TFX's ``LocalDagRunner.run_with_ir``,
for one node): compile the pipeline from the config, substitute the run id shared by every
task of the DAG run, and launch the node with TFX's portable ``Launcher``. The node finds its
inputs in ML Metadata through that run id; a cached node publishes its cached outputs.
"""
from __future__ import annotations

from typing import Optional

from absl import logging

from cartola.config import Config, load_config
from cartola.data.spans import Span
from cartola.orchestration import beam


def run_node(node_id: str, run_id: str, data_root: Optional[str] = None,
             config: Optional[Config] = None, span: Optional[Span] = None) -> None:
    """Launch ``node_id`` of the pipeline for pipeline run ``run_id``; raise if it fails."""
    # pylint: disable=import-outside-toplevel
    from tfx.dsl.compiler import constants
    from tfx.orchestration import metadata
    from tfx.orchestration.local import runner_utils
    from tfx.orchestration.portable import launcher, runtime_parameter_utils

    from cartola.pipeline.definition import compile_pipeline

    config = config or load_config()
    choice = beam.for_span(config, span)
    ir = compile_pipeline(config, data_root, span, beam_args=choice.args,
                          component_beam_args=choice.components)
    runtime_parameter_utils.substitute_runtime_parameter(
        ir, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id})
    deployment = runner_utils.extract_local_deployment_config(ir)
    connection = getattr(deployment.metadata_connection_config,
                         deployment.metadata_connection_config.WhichOneof("connection_config"))
    nodes = {node.pipeline_node.node_info.id: node.pipeline_node for node in ir.nodes}
    if node_id not in nodes:
        raise KeyError(f"pipeline has no node {node_id!r}; nodes: {sorted(nodes)}")
    logging.info("Launching %s for pipeline run %s", node_id, run_id)
    launcher.Launcher(
        pipeline_node=nodes[node_id],
        mlmd_connection=metadata.Metadata(connection),
        pipeline_info=ir.pipeline_info,
        pipeline_runtime_spec=ir.runtime_spec,
        executor_spec=runner_utils.extract_executor_spec(deployment, node_id),
        custom_driver_spec=runner_utils.extract_custom_driver_spec(deployment, node_id),
    ).launch()
    logging.info("%s finished", node_id)
