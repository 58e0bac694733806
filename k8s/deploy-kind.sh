#!/usr/bin/env bash
# Deploys the whole mesh to a local kind cluster:
#   bash k8s/deploy-kind.sh
# Needs docker, kind, kubectl and cargo. It builds one image per service
# (ferrymesh/SERVICE:TAG, from the Dockerfile), creates the kind cluster
# "ferrymesh" (k8s/kind-cluster.yaml) unless it exists, loads the images,
# makes the mesh's certificates with `ferrymesh certs` and stores each
# service's pair as the Secret mesh-tls-SERVICE, applies k8s/overlays/kind,
# waits for every rollout, and prints how to call the gateway.
#
# Environment: TAG (default dev), CLUSTER (default ferrymesh),
# CERTS (default .ferrymesh/kind-certs), SKIP_BUILD=1 to reuse images.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

TAG="${TAG:-dev}"
CLUSTER="${CLUSTER:-ferrymesh}"
CERTS="${CERTS:-.ferrymesh/kind-certs}"
NAMESPACE=ferrymesh
# The services with an image; the trace sink stays local (Jaeger takes its place).
SERVICES=(catalog inventory payments shipping orders workflow apikeys gateway)

for tool in docker kind kubectl cargo; do
  command -v "$tool" >/dev/null || { echo "deploy-kind: $tool is needed" >&2; exit 1; }
done

if [[ "${SKIP_BUILD:-}" != 1 ]]; then
  for service in "${SERVICES[@]}"; do
    echo "deploy-kind: building ferrymesh/$service:$TAG" >&2
    docker build --build-arg "SERVICE=$service" -t "ferrymesh/$service:$TAG" .
  done
fi

if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --config k8s/kind-cluster.yaml
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null
for service in "${SERVICES[@]}"; do
  kind load docker-image --name "$CLUSTER" "ferrymesh/$service:$TAG"
done

# The mesh's CA and one certificate per service, named for the namespace.
# What exists is kept, so a second run changes nothing.
cargo run --quiet --release -p ferrymesh -- certs init "$CERTS" --namespace "$NAMESPACE"
kubectl apply -f k8s/base/namespace.yaml
for service in "${SERVICES[@]}"; do
  # Each pod gets its own pair and the CA's certificate, never the CA's key.
  kubectl -n "$NAMESPACE" create secret generic "mesh-tls-$service" \
    --from-file=tls.crt="$CERTS/$service.pem" \
    --from-file=tls.key="$CERTS/$service.key" \
    --from-file=ca.crt="$CERTS/ca.pem" \
    --dry-run=client -o yaml | kubectl apply -f -
done

# The overlay names the :dev images; another TAG is swapped in here.
kubectl kustomize k8s/overlays/kind | sed "s#\(image: ferrymesh/[a-z]*\):dev#\1:$TAG#" | kubectl apply -f -

kubectl -n "$NAMESPACE" rollout status statefulset/postgres --timeout=5m
kubectl -n "$NAMESPACE" rollout status deployment/jaeger --timeout=5m
for service in "${SERVICES[@]}"; do
  kubectl -n "$NAMESPACE" rollout status "deployment/$service" --timeout=5m
done

cat <<TEXT

ferrymesh is running on kind cluster "$CLUSTER".
  gateway:   localhost:8080   (gRPC, plaintext to you, mutual TLS inside)
  Jaeger UI: http://localhost:16686

Register and call the gateway:
  grpcurl -plaintext -d '{"email":"ada@example.com","name":"Ada"}' localhost:8080 ferrymesh.apikeys.v1.DeveloperPortalService/RegisterDeveloper
  grpcurl -plaintext -H 'x-api-key: SECRET' -d '{"product_id":"mug"}' localhost:8080 ferrymesh.catalog.v1.CatalogService/GetProduct
TEXT
