# carebench in a container: `docker build -t carebench:0.1.0 .` (docs/deploy.md).
# Two stages: the build stage installs the package and its wheels into a virtualenv; the
# final image gets only that virtualenv, on the same slim base, and runs as a non-root user.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# pyproject.toml reads its version from src/ and its readme from README.md.
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m venv /opt/carebench \
    && /opt/carebench/bin/pip install . \
    && /opt/carebench/bin/carebench --version

FROM ${PYTHON_IMAGE}
# A fixed uid/gid, so the Kubernetes manifests can say runAsUser: 10001 and runAsNonRoot.
RUN groupadd --system --gid 10001 carebench \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
       --shell /usr/sbin/nologin carebench
COPY --from=build /opt/carebench /opt/carebench
COPY deploy/docker/healthcheck.py /opt/carebench/healthcheck.py
# No .pyc writes (the root filesystem is read-only in the Deployment); logs unbuffered;
# HOME and matplotlib's cache on /tmp, the one writable place (an emptyDir in Kubernetes).
ENV PATH=/opt/carebench/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "/opt/carebench/healthcheck.py"]
# carebench is PID 1 and gets SIGTERM itself: `serve` drains on it (--drain-timeout).
ENTRYPOINT ["carebench"]
# Listens on 127.0.0.1 in the container until told otherwise: a reachable server needs
# --host 0.0.0.0 with --auth and --tls-cert/--tls-key (or --insecure), as the Deployment sets.
CMD ["serve"]
