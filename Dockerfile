# stateful-guard: a small, non-root image. Build: docker build -t stateful-guard:dev .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY webhook webhook
COPY policies policies
COPY certs certs
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
# 65532: the conventional "nonroot" user; the Deployment runs with a read-only root filesystem.
USER 65532:65532
ENTRYPOINT ["stateful-guard"]
CMD ["serve", "--listen=0.0.0.0:8443"]
