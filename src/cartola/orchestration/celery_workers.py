"""Celery worker settings for Airflow's CeleryExecutor: TFX preloaded, one name per worker.

``[celery] celery_config_options = cartola.orchestration.celery_workers.CELERY_CONFIG``
is Airflow's default Celery config; naming it imports this module in every process that
loads the config. In a Celery worker, the ``worker_init`` signal then fires in the main
process before its prefork pool forks the children that run the tasks, and the handler
below preloads TFX there (see :mod:`cartola.orchestration.preload`). The scheduler loads
the same config to send tasks, but no worker starts in it, so it stays light.

``[core] hostname_callable = cartola.orchestration.celery_workers.worker_hostname`` lets
several workers on one machine stand for distinct hosts (``CARTOLA_WORKER_HOSTNAME``).
"""
from __future__ import annotations

import os
import socket

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import worker_init

from cartola.orchestration import preload

HOSTNAME_ENV = "CARTOLA_WORKER_HOSTNAME"
CELERY_CONFIG = dict(DEFAULT_CELERY_CONFIG)


def worker_hostname() -> str:
    """``$CARTOLA_WORKER_HOSTNAME``, else the machine's FQDN (Airflow's default)."""
    return os.environ.get(HOSTNAME_ENV) or socket.getfqdn()


@worker_init.connect
def _preload_in_worker(**_: object) -> None:
    """Celery's ``worker_init``: the worker's main process, before the pool forks."""
    preload.preload_if_enabled()
