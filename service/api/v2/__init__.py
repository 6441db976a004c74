"""The KServe Open Inference Protocol (V2) over HTTP, so that stock V2 clients (``tritonclient[http]``) work.

``tensors`` and ``codec`` read and write the wire format (pure functions, no HTTP); ``signature`` says what a
published version looks like over V2 (its inputs, outputs, metadata and config); ``routes`` and ``infer``
are the handlers. See docs/api-v2.md.
"""
