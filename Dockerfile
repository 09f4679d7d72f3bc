# lossd: REST on 8000, gRPC on 50051, one process (or --workers N sharing the ports).
#
#   docker build -t lossd .                       # from python:3.11-slim
#   docker run -p 8000:8000 -p 50051:50051 lossd
#
# Behind a TLS-intercepting proxy or a private index, pass the CA bundle and/or index URL:
#   --build-arg PIP_CERT=/path/ca.crt (mounted into the build) --build-arg PIP_INDEX_URL=...
# `--from <image>` (podman/buildah) swaps the base for any Debian-like image with python3 and
# python3-venv (deploy/container-test.sh uses a debootstrap bookworm; see docs/deploy.md).

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# --- build: a self-contained venv with lossd[server] only, at the versions in constraints.txt --
FROM base AS build
ARG PIP_CERT
ARG PIP_INDEX_URL
RUN python3 -m venv /opt/lossd
COPY pyproject.toml README.md constraints.txt /src/
COPY service /src/service
# empty build args must not reach pip as empty settings
RUN [ -n "${PIP_CERT:-}" ] || unset PIP_CERT; \
    [ -n "${PIP_INDEX_URL:-}" ] || unset PIP_INDEX_URL; \
    /opt/lossd/bin/python -m pip install --no-cache-dir --disable-pip-version-check \
        -c /src/constraints.txt '/src[server]' \
 && /opt/lossd/bin/python -m pip uninstall --yes --quiet pip setuptools \
 && find /opt/lossd -name '*.dist-info' -prune -o -name tests -type d -prune -exec rm -rf {} +

# --- runtime: the venv on a clean base, a non-root user, no compilers, no pip ----------------
FROM base
RUN groupadd --system --gid 10001 lossd \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin lossd \
 && install -d -o 10001 -g 10001 /var/lib/lossd
COPY --from=build /opt/lossd /opt/lossd
# evaluation runs (sqlite store) live in /var/lib/lossd: mount a volume there to keep them
ENV PATH=/opt/lossd/bin:$PATH \
    LOSSD_HOST=0.0.0.0 \
    LOSSD_LOG_JSON=true \
    LOSSD_RUNS_DIR=/var/lib/lossd/runs
# numeric, so Kubernetes' runAsNonRoot can verify it
USER 10001:10001
EXPOSE 8000 50051
# no curl in the image: the venv's Python asks /readyz (urlopen raises on 503)
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('LOSSD_HTTP_PORT', '8000') + '/readyz', timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["lossd", "serve"]
CMD []
