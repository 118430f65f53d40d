#!/usr/bin/env bash
# Install (or upgrade) stateful-guard with kustomize in the cluster kubectl points at, as
# README "Install in a cluster" says:
#
#   deploy/install.sh [--image NAME:TAG] [--certs DIR] [namespaced|cluster-wide|KUSTOMIZATION]
#
# 1. certificates: `stateful-guard certs` into DIR (default .stateful-guard/install-certs;
#    an existing CA there is reused, so an upgrade keeps the caBundle valid);
# 2. `kubectl apply -k` of the overlay (or your own kustomization) with the image set;
# 3. the Secret stateful-guard-tls, and the CA in each webhook's caBundle;
# 4. waits until the Deployment is available.
# The data webhooks are shipped `Ignore` and turn `Fail` once the API server has reached a
# replica, so no step here can lock out stateful writes. Needs kubectl and the
# `stateful-guard` command (KUBECTL and STATEFUL_GUARD name others).
set -euo pipefail
image="" certs=.stateful-guard/install-certs target=namespaced
while [ $# -gt 0 ]; do
  case "$1" in
    --image) image=$2; shift 2 ;;
    --certs) certs=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set/{/^set/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    -*) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) target=$1; shift ;;
  esac
done
kubectl=${KUBECTL:-kubectl}
stateful_guard=${STATEFUL_GUARD:-stateful-guard}
here=$(cd "$(dirname "$0")" && pwd)
case "$target" in
  namespaced|cluster-wide) source=$here/overlays/$target ;;
  *)
    if [ ! -f "$target/kustomization.yaml" ]; then
      echo "install.sh: $target is neither namespaced, cluster-wide nor a directory with a kustomization.yaml" >&2
      exit 2
    fi
    source=$(cd "$target" && pwd) ;;
esac
namespace=stateful-guard
if [ -n "$image" ]; then
  name=${image%%@*} tag=""
  [[ $image == *@* ]] || { name=${image%:*} tag=${image##*:}; }
  if [[ $image != *@* && ( $image != *:* || $tag == */* ) ]]; then
    echo "install.sh: --image $image needs a tag (NAME:TAG) or a digest (NAME@sha256:...)" >&2
    exit 2
  fi
fi

"$stateful_guard" certs --out "$certs" --service stateful-guard --namespace "$namespace"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# kustomize takes only relative paths to other kustomizations.
echo "resources: [$(realpath --relative-to="$work" "$source")]" > "$work/kustomization.yaml"
if [[ $image == *@* ]]; then
  echo "images: [{name: stateful-guard, newName: \"$name\", digest: \"${image#*@}\"}]"
elif [ -n "$image" ]; then
  echo "images: [{name: stateful-guard, newName: \"$name\", newTag: \"$tag\"}]"
fi >> "$work/kustomization.yaml"
"$kubectl" apply -k "$work"

"$kubectl" -n "$namespace" create secret generic stateful-guard-tls --type=kubernetes.io/tls \
  --from-file=tls.crt="$certs/tls.crt" --from-file=tls.key="$certs/tls.key" \
  --from-file=ca.crt="$certs/ca.crt" --dry-run=client -o yaml | "$kubectl" apply -f -

ca_bundle=$(base64 -w0 < "$certs/ca.crt")
for config in mutatingwebhookconfiguration validatingwebhookconfiguration; do
  count=$("$kubectl" get "$config" stateful-guard -o jsonpath='{range .webhooks[*]}x{end}' | wc -c)
  patch=""
  for ((i = 0; i < count; i++)); do
    patch+="{\"op\":\"add\",\"path\":\"/webhooks/$i/clientConfig/caBundle\",\"value\":\"$ca_bundle\"},"
  done
  "$kubectl" patch "$config" stateful-guard --type=json -p "[${patch%,}]"
done

"$kubectl" -n "$namespace" rollout status deployment/stateful-guard --timeout=300s
echo "stateful-guard ($target) is available."
