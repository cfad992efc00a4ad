"""Serving the pushed model: a TF Serving-compatible REST server and its client.

``cartola.serving.server`` (the command line) loads the served integer version under
``serving_model/<name>/`` (``cartola.serving.core``: versions and predict;
``cartola.serving.model``: the SavedModel and its request contract) and answers TF Serving's
REST API with the FastAPI app of ``cartola.serving.app``; ``cartola.serving.client`` speaks
that API through the model's ``predict_raw`` signature, so the same client code works
against real TF Serving pointed at the same folder. See docs/SERVING.md.

Importing this package is cheap: TensorFlow is imported only when a model is loaded.
"""
