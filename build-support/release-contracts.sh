#!/usr/bin/env bash
# The deliberate step that moves the breaking-change baseline: builds the
# packages listed in proto/released-packages.txt, as they are now, into
# proto/released.binpb. Run it when a service ships a package, or after an
# additive change to a released package; never to make `buf breaking` pass.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
buf="$root/.tools/bin/buf"
[ -x "$buf" ] || { echo "release-contracts: buf is missing; run bash build-support/install-tools.sh" >&2; exit 1; }
cd "$root"

paths=()
while read -r package; do
  dir="proto/$(echo "$package" | tr . /)"
  [ -d "$dir" ] || { echo "release-contracts: $package has no directory $dir" >&2; exit 1; }
  paths+=(--path "$dir")
done < <(grep -vE '^\s*(#|$)' proto/released-packages.txt)

# Only break-check what was released before: a released package must not break.
if [ -f proto/released.binpb ]; then
  "$buf" breaking --against proto/released.binpb
fi
"$buf" build "${paths[@]}" --exclude-source-info -o proto/released.binpb
echo "release-contracts: proto/released.binpb now holds: $(grep -vE '^\s*(#|$)' proto/released-packages.txt | tr '\n' ' ')" >&2
