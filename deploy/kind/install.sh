#!/usr/bin/env bash
# Install stateful-guard into a kind cluster: build the image, load it, make certificates,
# apply an overlay of deploy/, point the webhooks' caBundle at our CA.
# Needs Docker, kind and kubectl on PATH, and this repo's .venv (see README).
#   deploy/kind/install.sh [namespaced|cluster-wide]
set -euo pipefail
cd "$(dirname "$0")/../.."
overlay=${1:-namespaced}
cluster=stateful-guard
namespace=stateful-guard

kind get clusters | grep -qx "$cluster" || kind create cluster --config deploy/kind/cluster.yaml
kubectl config use-context "kind-$cluster"
docker build -t stateful-guard:dev .
kind load docker-image stateful-guard:dev --name "$cluster"

certs=.cache/kind-certs
.venv/bin/stateful-guard certs --out "$certs" --service stateful-guard --namespace "$namespace"
kubectl apply -k "deploy/overlays/$overlay"
kubectl -n "$namespace" create secret tls stateful-guard-tls \
  --cert="$certs/tls.crt" --key="$certs/tls.key" --dry-run=client -o yaml | kubectl apply -f -
ca_bundle=$(base64 -w0 < "$certs/ca.crt")
for config in mutatingwebhookconfiguration validatingwebhookconfiguration; do
  count=$(kubectl get "$config" stateful-guard -o jsonpath='{range .webhooks[*]}x{end}' | wc -c)
  patch=$(for ((i = 0; i < count; i++)); do
    printf '{"op":"add","path":"/webhooks/%d/clientConfig/caBundle","value":"%s"},' "$i" "$ca_bundle"
  done)
  kubectl patch "$config" stateful-guard --type=json -p "[${patch%,}]"
done
kubectl -n "$namespace" rollout status deployment/stateful-guard --timeout=180s
echo "stateful-guard ($overlay) is running; label a namespace: kubectl label ns NAME stateful-guard.io/mode=enforce"
