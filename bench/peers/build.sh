#!/usr/bin/env bash
# Build the Go engines `python -m bench peers` compares with, from their Go modules (no
# registry but the Go module proxy is reachable here), into the cache beside the control
# plane's binaries. Measured here: a few minutes each, once their modules are downloaded.
set -euo pipefail
out="${STATEFUL_GUARD_CACHE:-$HOME/.cache/stateful-guard}/peers/bin"
mkdir -p "$out"

# OPA Gatekeeper: its go.mod has no replace directives, so `go install` builds it.
[ -x "$out/gatekeeper" ] || GOBIN="$out" go install github.com/open-policy-agent/gatekeeper/v3@v3.23.1

# Kyverno: its go.mod replaces k8s.io/pod-security-admission, which `go install` refuses; a
# wrapper module requires it and repeats the replace line.
if [ ! -x "$out/kyverno" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  cat > "$work/go.mod" <<'MOD'
module peers/kyverno

go 1.26.6

require github.com/kyverno/kyverno v1.19.1

replace k8s.io/pod-security-admission => github.com/kyverno/pod-security-admission v0.0.0-20251031094455-46f20778634f
MOD
  printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/kyverno/kyverno/cmd/kyverno"\n' \
    > "$work/tools.go"
  (cd "$work" && go mod tidy && go build -o "$out/kyverno" github.com/kyverno/kyverno/cmd/kyverno)
fi
ls -l "$out"
