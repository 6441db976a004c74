"""Peer for side-by-side benchmarks: BentoML serving one ONNX image classifier, as its docs set it up for throughput.

The same job as our /v1 classify: POST /classify with the image in the multipart field ``images``; decode,
resize and normalize on the server, onnxruntime on the CPU, adaptive batching (``batchable=True``), top-5 out.
``PEER_WORKERS`` processes (``@bentoml.service(workers=...)``, default 2) of ``PEER_THREADS`` onnxruntime
threads each (default 1): run it with as many processes and threads as the server it is compared with.
benchmarks/serve_load.py starts it with ``bentoml serve bentoml_peer:Classifier`` and its access log off.
Configured by environment: PEER_MODEL (the .onnx file), PEER_SIZE (e.g. 28 or 224), PEER_CHANNELS (1 or 3),
PEER_MEAN / PEER_STD (comma-separated, one per channel).
"""

import os

import bentoml
import numpy as np
from PIL import Image

MODEL = os.environ["PEER_MODEL"]
SIZE = int(os.environ.get("PEER_SIZE", "28"))
CHANNELS = int(os.environ.get("PEER_CHANNELS", "1"))
MEAN = np.array([float(v) for v in os.environ.get("PEER_MEAN", "0.2860").split(",")], np.float32)
STD = np.array([float(v) for v in os.environ.get("PEER_STD", "0.3530").split(",")], np.float32)
WORKERS = int(os.environ.get("PEER_WORKERS", "2"))
THREADS = int(os.environ.get("PEER_THREADS", "1"))


def preprocess(img: Image.Image) -> np.ndarray:
    img = img.convert("L" if CHANNELS == 1 else "RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    x = np.asarray(img, np.float32).reshape(SIZE, SIZE, CHANNELS) / 255.0
    return ((x - MEAN) / STD).transpose(2, 0, 1)


@bentoml.service(workers=WORKERS, traffic={"timeout": 60})
class Classifier:
    def __init__(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = THREADS
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(MODEL, opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    @bentoml.api(batchable=True, max_batch_size=64, max_latency_ms=2000)
    def classify(self, images: list[Image.Image]) -> list[dict]:
        batch = np.stack([preprocess(i) for i in images])
        logits = self.session.run(None, {self.input: batch})[0]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = e / e.sum(axis=1, keepdims=True)
        top = np.argsort(-probs, axis=1)[:, :5]
        return [
            {"top": [{"index": int(j), "probability": float(p[j])} for j in t]} for p, t in zip(probs, top, strict=True)
        ]
