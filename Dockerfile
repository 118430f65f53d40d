# stateful-guard: a small, non-root image. Build: docker build -t stateful-guard:dev .
# Reproducible: the base is pinned by digest and the dependencies by requirements.lock
# (exact versions and hashes); docs/developing.md says how to refresh both.
# BASE: any image with Python 3.11 and its venv module (the e2e suite passes a Debian
# bookworm base it makes with debootstrap, as no registry is reachable there).
ARG BASE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b
FROM ${BASE} AS build
WORKDIR /src
COPY requirements.lock ./
# A virtual environment: the same layout on every base (Debian's own pip would put a
# --prefix install under local/, and refuses to install beside the system's packages).
RUN python3 -m venv /opt/stateful-guard \
 && /opt/stateful-guard/bin/pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY webhook webhook
COPY policies policies
COPY certs certs
RUN /opt/stateful-guard/bin/pip install --no-cache-dir --no-deps .

FROM ${BASE}
COPY --from=build /opt/stateful-guard /opt/stateful-guard
ENV PATH=/opt/stateful-guard/bin:$PATH
# 65532: the conventional "nonroot" user; the Deployment runs with a read-only root filesystem.
USER 65532:65532
ENTRYPOINT ["stateful-guard"]
CMD ["serve", "--listen=0.0.0.0:8443"]
