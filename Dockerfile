# imgcls container images: one Dockerfile, four targets (docs/containers.md).
#
#   api         the inference API (imgcls serve), without torch and without the training package: the base
#               dependencies of pyproject.toml and its `cpu` extra (onnxruntime's CPU build)
#   worker      the fine-tuning worker (imgcls worker) with torch's CPU build and the train extra;
#               also runs imgcls train and Flower
#   api-gpu     api with onnxruntime-gpu and NVIDIA's CUDA 13 and cuDNN 9 pip wheels (onnxruntime-gpu[cuda,cudnn])
#   worker-gpu  worker with torch's CUDA 13 build (PyPI's torch wheel for Linux x86_64)
#
#   docker build --target api -t imgcls-api .
#
# All four start from Debian 12 (bookworm) and its Python 3.11, in a virtual environment (/opt/imgcls): the
# project needs Python 3.11, which Ubuntu 24.04 and so the nvidia/cuda images do not ship, and debian:12 is
# the one base that scripts/containers.sh can also make without a registry (mmdebstrap), so the file it
# builds and tests is this file. The GPU targets take CUDA and cuDNN from NVIDIA's pip wheels instead of a
# CUDA base image: torch's CUDA build depends on those wheels anyway (a CUDA base image would hold the same
# 3 GB twice), onnxruntime.preload_dlls() loads them, and the host's NVIDIA Container Toolkit adds the
# driver. Dependencies are installed from lists read out of pyproject.toml alone
# (deploy/docker/requirements.py), before the source is copied: a source change rebuilds only the last
# layers.

FROM debian:12.15-slim AS python
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/imgcls \
    PATH=/opt/imgcls/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Debian's python3.11 (3.11.2 with Debian's security fixes) takes no version pin: bookworm keeps only the
# newest revision, so a pinned one would stop building at the next security update.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3.11 python3.11-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/imgcls \
    && python -m pip install --no-cache-dir pip==26.3

# base.txt, cpu.txt, gpu.txt, cuda.txt, train.txt, torch.txt: see deploy/docker/requirements.py.
FROM python AS requirements
COPY pyproject.toml deploy/docker/requirements.py /tmp/
RUN python /tmp/requirements.py /tmp/pyproject.toml /requirements

# The project's own wheels (pure Python), built with a pinned setuptools; the build fails when a wheel lacks
# a file of the source it was built from (deploy/docker/check_wheel.py), e.g. the web page's assets.
# api-wheel: service/ alone (the API images never hold the training package); wheel: service/ and training/.
FROM python AS api-wheel
RUN python -m pip install --no-cache-dir setuptools==84.2.1
WORKDIR /src
COPY deploy/docker/check_wheel.py /tmp/
COPY pyproject.toml README.md ./
COPY service/ service/
RUN python -m pip wheel --no-cache-dir --no-build-isolation --no-deps --wheel-dir /wheels . \
    && python /tmp/check_wheel.py /wheels/imgcls-*.whl /src

FROM api-wheel AS wheel
COPY training/ training/
RUN rm -r /wheels \
    && python -m pip wheel --no-cache-dir --no-build-isolation --no-deps --wheel-dir /wheels . \
    && python /tmp/check_wheel.py /wheels/imgcls-*.whl /src

# Fashion-MNIST for `imgcls train`: Debian's package, the files scripts/setup.sh uses.
FROM python AS fashion-mnist
RUN apt-get update \
    && apt-get install -y --no-install-recommends dataset-fashion-mnist=0.0~git20200523.55506a9-1 \
    && rm -rf /var/lib/apt/lists/*

# What every image shares: an unprivileged user (numeric, so Kubernetes' runAsNonRoot can check it), the
# data folders it owns (a new named volume mounted on /data takes this ownership), the container defaults.
FROM python AS runtime
RUN groupadd --system --gid 10001 imgcls \
    && useradd --system --uid 10001 --gid imgcls --create-home --home-dir /home/imgcls \
        --shell /usr/sbin/nologin imgcls \
    && mkdir -p /data/models /data/datasets /data/runs \
    && chown -R imgcls:imgcls /data
ENV IMGCLS_HOST=0.0.0.0 \
    IMGCLS_PORT=8000 \
    IMGCLS_AUTH_ENABLED=true \
    IMGCLS_MODEL_ROOT=/data/models \
    IMGCLS_DATA_ROOT=/data \
    IMGCLS_RUNS_DIR=/data/runs \
    IMGCLS_FASHION_MNIST_DIR=/usr/share/datasets/fashion-mnist
WORKDIR /home/imgcls

# ---- the API: no torch, ever
FROM runtime AS api-deps
COPY --from=requirements /requirements/base.txt /tmp/requirements/
RUN python -m pip install --no-cache-dir -r /tmp/requirements/base.txt

FROM api-deps AS api
COPY --from=requirements /requirements/cpu.txt /tmp/requirements/
RUN python -m pip install --no-cache-dir -r /tmp/requirements/cpu.txt
COPY --from=api-wheel /wheels/ /tmp/wheels/
RUN python -m pip install --no-cache-dir --no-deps /tmp/wheels/*.whl \
    && python -m pip check \
    && rm -rf /tmp/wheels
COPY deploy/docker/healthcheck.py /usr/local/lib/imgcls/healthcheck.py
USER 10001:10001
EXPOSE 8000
# /healthz/live: the server answers (readiness, /healthz/ready, is for traffic: a load balancer or a probe)
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
    CMD ["python", "/usr/local/lib/imgcls/healthcheck.py", "api"]
CMD ["imgcls", "serve"]

FROM api-deps AS api-gpu
COPY --from=requirements /requirements/cuda.txt /tmp/requirements/
RUN python -m pip install --no-cache-dir -r /tmp/requirements/cuda.txt
COPY --from=api-wheel /wheels/ /tmp/wheels/
RUN python -m pip install --no-cache-dir --no-deps /tmp/wheels/*.whl \
    && python -m pip check \
    && rm -rf /tmp/wheels
COPY deploy/docker/healthcheck.py /usr/local/lib/imgcls/healthcheck.py
# cuda: refuse to start without a working GPU rather than serve from the CPU unnoticed (auto falls back)
ENV IMGCLS_PROVIDERS=cuda \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    NVIDIA_REQUIRE_CUDA="cuda>=13.0"
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/lib/imgcls/healthcheck.py", "api"]
CMD ["imgcls", "serve"]

# ---- the workers: torch and the train extra, Fashion-MNIST, Flower (the Celery monitor; only here)
FROM runtime AS worker
COPY --from=fashion-mnist /usr/share/datasets/fashion-mnist/ /usr/share/datasets/fashion-mnist/
COPY --from=requirements /requirements/torch.txt /tmp/requirements/
# torch and torchvision at pyproject's versions, by default PyTorch's CPU build (no CUDA libraries: about
# 3 GB less); an empty TORCH_INDEX_URL takes them from pip's own index instead (PyPI: the CUDA build)
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN python -m pip install --no-cache-dir ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} \
        -r /tmp/requirements/torch.txt
COPY --from=requirements /requirements/base.txt /requirements/cpu.txt /requirements/train.txt /tmp/requirements/
RUN python -m pip install --no-cache-dir -r /tmp/requirements/base.txt -r /tmp/requirements/cpu.txt \
        -r /tmp/requirements/train.txt flower==2.2.0
COPY --from=wheel /wheels/ /tmp/wheels/
RUN python -m pip install --no-cache-dir --no-deps /tmp/wheels/*.whl \
    && python -m pip check \
    && rm -rf /tmp/wheels
COPY recipes/ recipes/
COPY deploy/docker/healthcheck.py /usr/local/lib/imgcls/healthcheck.py
USER 10001:10001
# a Celery worker of this container answers a ping through Redis (deploy/docker/healthcheck.py)
HEALTHCHECK --interval=30s --timeout=15s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/lib/imgcls/healthcheck.py", "worker"]
CMD ["imgcls", "worker"]

FROM runtime AS worker-gpu
COPY --from=fashion-mnist /usr/share/datasets/fashion-mnist/ /usr/share/datasets/fashion-mnist/
COPY --from=requirements /requirements/torch.txt /tmp/requirements/
# PyPI's torch wheel for Linux x86_64 is the CUDA 13 build; it brings NVIDIA's CUDA and cuDNN wheels
RUN python -m pip install --no-cache-dir -r /tmp/requirements/torch.txt
COPY --from=requirements /requirements/base.txt /requirements/gpu.txt /requirements/train.txt /tmp/requirements/
RUN python -m pip install --no-cache-dir -r /tmp/requirements/base.txt -r /tmp/requirements/gpu.txt \
        -r /tmp/requirements/train.txt flower==2.2.0
COPY --from=wheel /wheels/ /tmp/wheels/
RUN python -m pip install --no-cache-dir --no-deps /tmp/wheels/*.whl \
    && python -m pip check \
    && rm -rf /tmp/wheels
COPY recipes/ recipes/
COPY deploy/docker/healthcheck.py /usr/local/lib/imgcls/healthcheck.py
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    NVIDIA_REQUIRE_CUDA="cuda>=13.0"
USER 10001:10001
HEALTHCHECK --interval=30s --timeout=15s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/lib/imgcls/healthcheck.py", "worker"]
CMD ["imgcls", "worker"]
