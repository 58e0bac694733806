#!/usr/bin/env bash
# The one test command, as the README gives it and CI runs it: installs the
# tools the tests drive, checks the contracts, formatting and lints, then
# runs every test of the workspace (unit, per-service, end-to-end).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

step() { printf '\n==> %s\n' "$*" >&2; }

step "tools (buf, grpcurl, hadolint, checkov, kubernetes-validate, chromium, playwright, axe-core, mdbook) into .tools/"
bash build-support/install-tools.sh

step "contracts: buf lint, buf format, buf breaking"
bash build-support/check-contracts.sh

step "hadolint Dockerfile"
.tools/bin/hadolint Dockerfile

step "Kubernetes manifests: kustomize render, schema validation (strict), checkov"
bash build-support/check-manifests.sh

step "the book: mdbook build docs (links are checked by tests/docs.rs)"
.tools/mdbook/bin/mdbook build docs

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
