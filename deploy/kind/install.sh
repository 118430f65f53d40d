#!/usr/bin/env bash
# Install stateful-guard into a kind cluster: build the image, load it, then deploy/install.sh
# (certificates, the overlay, the Secret, the webhooks' caBundle, the rollout).
# Needs Docker, kind and kubectl on PATH, and this repo's .venv (see README).
#   deploy/kind/install.sh [namespaced|cluster-wide]
set -euo pipefail
cd "$(dirname "$0")/../.."
overlay=${1:-namespaced}
cluster=stateful-guard

kind get clusters | grep -qx "$cluster" || kind create cluster --config deploy/kind/cluster.yaml
kubectl config use-context "kind-$cluster"
docker build -t stateful-guard:dev .
kind load docker-image stateful-guard:dev --name "$cluster"

STATEFUL_GUARD=.venv/bin/stateful-guard deploy/install.sh --certs .cache/kind-certs "$overlay"
echo "stateful-guard ($overlay) is running; label a namespace: kubectl label ns NAME stateful-guard.io/mode=enforce"
