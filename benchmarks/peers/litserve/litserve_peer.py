"""Peer for side-by-side benchmarks: LitServe serving one ONNX image classifier, as its docs set it up for throughput.

The same job as our /v1 classify: POST /predict with the image in the multipart field ``images``; decode,
resize and normalize on the server, onnxruntime on the CPU, top-5 out. As LitServe's docs recommend for
throughput: a ``LitAPI`` with batching (``max_batch_size`` 64, ``batch_timeout`` 2 ms), ``fast_queue``
(ZeroMQ between the API servers and the inference workers: "for high-throughput scenarios, > 100 RPS"),
``workers_per_device`` = ``PEER_WORKERS`` inference processes (default 2) of ``PEER_THREADS`` onnxruntime
threads each (default 1) and as many API server processes (``PEER_API_SERVERS``), access log off, no
client file. Configured by environment as benchmarks/peers/bentoml/bentoml_peer.py, plus PEER_PORT.
"""

import io
import os

import litserve as ls
import numpy as np
from PIL import Image

MODEL = os.environ["PEER_MODEL"]
SIZE = int(os.environ.get("PEER_SIZE", "28"))
CHANNELS = int(os.environ.get("PEER_CHANNELS", "1"))
MEAN = np.array([float(v) for v in os.environ.get("PEER_MEAN", "0.2860").split(",")], np.float32)
STD = np.array([float(v) for v in os.environ.get("PEER_STD", "0.3530").split(",")], np.float32)
WORKERS = int(os.environ.get("PEER_WORKERS", "2"))
THREADS = int(os.environ.get("PEER_THREADS", "1"))


class Classifier(ls.LitAPI):
    def setup(self, device: str) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = THREADS
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(MODEL, opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def decode_request(self, request):
        upload = request["images"]
        data = upload.file.read() if hasattr(upload, "file") else upload
        img = Image.open(io.BytesIO(data)).convert("L" if CHANNELS == 1 else "RGB")
        img = img.resize((SIZE, SIZE), Image.Resampling.BILINEAR)
        x = np.asarray(img, np.float32).reshape(SIZE, SIZE, CHANNELS) / 255.0
        return ((x - MEAN) / STD).transpose(2, 0, 1)

    def batch(self, inputs):
        return np.stack(inputs)

    def predict(self, batch):
        logits = self.session.run(None, {self.input: batch})[0]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def unbatch(self, output):
        return list(output)

    def encode_response(self, p):
        top = np.argsort(-p)[:5]
        return {"top": [{"index": int(j), "probability": float(p[j])} for j in top]}


if __name__ == "__main__":
    api = Classifier(max_batch_size=64, batch_timeout=0.002)
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=WORKERS, timeout=60, fast_queue=True)
    server.run(
        host="127.0.0.1",
        port=int(os.environ.get("PEER_PORT", "3901")),
        num_api_servers=int(os.environ.get("PEER_API_SERVERS", str(WORKERS))),
        log_level="warning",
        generate_client_file=False,
        access_log=False,
    )
