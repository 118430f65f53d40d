#!/usr/bin/env bash
# Run the end-to-end suite against a kind cluster instead of the local control plane. The
# suite applies deploy/ as shipped (the webhook runs in the cluster, from the image loaded
# here). Needs Docker, kind and kubectl on PATH, and this repo's .venv (see README).
set -euo pipefail
cd "$(dirname "$0")/../.."
cluster=stateful-guard
kind get clusters | grep -qx "$cluster" || kind create cluster --config deploy/kind/cluster.yaml
docker build -t stateful-guard:dev .
kind load docker-image stateful-guard:dev --name "$cluster"
mkdir -p .cache
kind get kubeconfig --name "$cluster" > .cache/kind.kubeconfig
STATEFUL_GUARD_E2E_KUBECONFIG="$PWD/.cache/kind.kubeconfig" .venv/bin/pytest tests/e2e "$@"
