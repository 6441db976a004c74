"""The inference data plane, without HTTP: images in, ranked calibrated labels out.

``classify.py`` is the one path from images to results (decode with ``service.imaging``, batch, predict,
rank); ``batcher.py`` groups concurrent requests; ``predictor.py`` is one loaded version's onnxruntime
session and temperature; ``registry.py`` loads, swaps and releases versions; ``offline.py`` runs the same
pieces over files for ``imgcls classify``.
"""
