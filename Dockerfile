# syntax=docker/dockerfile:1.7
# Three targets from one file:
#   docker build --target serve -t draftpick/serve .   the API: onnxruntime only, non-root
#   docker build --target train -t draftpick/train .   the training job: scikit-learn, skl2onnx, ...
#   docker build --target spark -t draftpick/spark .   batch scoring on Apache Spark: Java + pyspark
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app
WORKDIR /app

# ---- serving image: pinned serving requirements first (cached), then the code ----
FROM base AS serve
COPY requirements/serve.txt requirements/serve.txt
RUN pip install --no-deps -r requirements/serve.txt
COPY pyproject.toml README.md ./
COPY service/ service/
RUN pip install --no-deps . \
 && python -c "import service.app, sys; assert 'sklearn' not in sys.modules"
COPY --chown=app:app models/ /app/models/
USER 10001:10001
ENV PREDICT_HOST=0.0.0.0 \
    PREDICT_PORT=8000 \
    PREDICT_GRPC_PORT=8001 \
    PREDICT_MODELS_DIR=/app/models
# HTTP (v1, V2 REST, the page, /metrics) and the Open Inference Protocol over gRPC
EXPOSE 8000 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status != 200)"]
CMD ["python", "-m", "service"]

# ---- training image: the training stack; writes new versions into the models volume ----
FROM base AS train
COPY requirements/train.txt requirements/train.txt
RUN pip install --no-deps -r requirements/train.txt
COPY pyproject.toml README.md ./
COPY service/ service/
COPY training/ training/
RUN pip install --no-deps .
USER 10001:10001
ENV MPLCONFIGDIR=/tmp/matplotlib
ENTRYPOINT ["python", "-m", "training"]
CMD ["train", "all", "--out", "/app/models"]

# ---- Spark image: `score --engine spark` as a driver (local[N] in one container), and the
# executors' image for Spark on Kubernetes (spark.kubernetes.container.image) ----
FROM base AS spark
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
 && rm -rf /var/lib/apt/lists/*
COPY requirements/spark.txt requirements/spark.txt
RUN pip install --no-deps -r requirements/spark.txt
COPY pyproject.toml README.md ./
COPY service/ service/
RUN pip install --no-deps . \
 && python -c "import service.batch.spark"
COPY --chown=app:app models/ /app/models/
USER 10001:10001
ENV PYSPARK_PYTHON=python \
    HOME=/tmp
ENTRYPOINT ["python", "-m", "service", "score", "--engine", "spark", "--models", "/app/models"]
CMD ["--help"]
