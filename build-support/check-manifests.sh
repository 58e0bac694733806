#!/usr/bin/env bash
# The Kubernetes manifests, proven offline (no cluster here):
#   1. kubectl kustomize renders k8s/overlays/kind;
#   2. every rendered object validates against the Kubernetes 1.34 schemas,
#      strictly (unknown fields are errors), with kubernetes-validate;
#   3. checkov's Kubernetes checks pass, but for the skips justified in
#      k8s/.checkov.yaml.
# The manifest-versus-crate test (tests/manifests.rs) checks the rest.
set -euo pipefail

KUBERNETES_VERSION=1.34.0

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.tools/k8s-venv"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

kubectl kustomize k8s/overlays/kind > "$out/kind.yaml"
echo "check-manifests: rendered $(grep -c '^kind:' "$out/kind.yaml") objects" >&2

"$venv/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$KUBERNETES_VERSION" "$out/kind.yaml"
echo "check-manifests: every object is valid Kubernetes $KUBERNETES_VERSION (strict)" >&2

# checkov writes its results under the working directory; keep them out of the tree.
(cd "$out" && "$venv/bin/checkov" --config-file "$root/k8s/.checkov.yaml" -f "$out/kind.yaml")
