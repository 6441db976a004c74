"""The online half of imgcls: the model repository format, the onnxruntime data plane and the HTTP API.

Nothing in this package imports torch; ``tests/service/test_no_torch.py`` holds that rule.
"""
