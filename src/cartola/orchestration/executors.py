"""Airflow executors that preload TFX in the process their task workers are forked from."""
from __future__ import annotations

from airflow.executors.local_executor import LocalExecutor

from cartola.orchestration import preload


class PreloadLocalExecutor(LocalExecutor):  # pylint: disable=abstract-method
    """LocalExecutor whose workers inherit an imported TFX.

    ``start()`` runs in the scheduler and forks ``parallelism`` workers at once; importing
    TFX just before means every worker, and every task the task SDK's supervisor forks from
    it, starts with TFX loaded. ``CARTOLA_PRELOAD_TFX=false`` keeps the scheduler light.
    Configure with ``[core] executor = cartola.orchestration.executors.PreloadLocalExecutor``.
    """

    def start(self) -> None:
        preload.preload_if_enabled()
        super().start()
