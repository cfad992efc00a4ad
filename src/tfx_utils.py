"""TFX module file: the ``preprocessing_fn`` (Transform) and ``run_fn`` (Trainer) entry points.

The pipeline refers to them by module path (``tfx_utils.preprocessing_fn``,
``tfx_utils.run_fn``) rather than by ``module_file``, so TFX imports the installed package
instead of packaging the ``src/`` folder into a wheel at every run. The code lives in
``cartola.models``.
"""
from cartola.models.trainer import run_fn
from cartola.models.preprocessing import preprocessing_fn

__all__ = ["preprocessing_fn", "run_fn"]
