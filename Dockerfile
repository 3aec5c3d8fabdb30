# The frictionwatch worker image (docker-compose.yml builds it for worker1, worker2).
# It installs from the same files as `make`, only what the worker needs of them, so the
# two cannot drift (tests/deploy/test_compose.py checks it):
#   - Debian packages: deploy/install-system-packages.sh with the runtime list
#     deploy/system-packages.txt only (make test adds deploy/test-packages.txt: Chromium,
#     promtool, kcat... stay out of the image);
#   - Python: this pyproject.toml, with the rocksdb extra (RocksDB table store) instead of
#     the dev extra.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY deploy/install-system-packages.sh deploy/system-packages.txt deploy/
RUN bash deploy/install-system-packages.sh deploy/system-packages.txt && rm -rf /var/lib/apt/lists/*

COPY pyproject.toml README.md ./
COPY detectors/ detectors/
COPY streamer/ streamer/
RUN python -m pip install --upgrade pip && python -m pip install ".[rocksdb]"

# Faust keeps its data directory (RocksDB tables) in FW_DATA_DIR, which docker-compose
# points into this directory, where it mounts one volume per worker.
RUN useradd --system --create-home --home-dir /var/lib/frictionwatch frictionwatch
USER frictionwatch
WORKDIR /var/lib/frictionwatch

EXPOSE 6066
ENTRYPOINT ["frictionwatch"]
CMD ["worker", "--broker", "kafka:9092", "--web-host", "0.0.0.0"]
