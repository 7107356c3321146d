# edgeva: one image for every role of a cluster (cloud, edge, camera, dashboard). CPU PyTorch.
#   docker build -t edgeva .
#   docker compose -f deploy/compose.yaml up        (see docs/operations.md)
FROM python:3.11-slim-bookworm

# CPU-only PyTorch (the CUDA wheels are several GB); override for another index or a GPU build.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    EDGEVA_ASSETS=/assets EDGEVA_CACHE=/cache PYTHONUNBUFFERED=1

RUN pip install torch==2.13.0 --index-url "${TORCH_INDEX}"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && useradd --create-home --uid 1000 edgeva && mkdir -p /cache /runs && chown edgeva /cache /runs

USER edgeva
# Sample videos and weights are not in the image: mount them (or let edgeva download them to /cache).
VOLUME ["/assets", "/cache", "/runs"]
ENTRYPOINT ["edgeva"]
CMD ["--help"]
