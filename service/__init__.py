"""The online half of imgcls: the model repository format and (later) the inference API.

Nothing in this package imports torch; ``tests/service/test_no_torch.py`` holds that rule.
"""
