#!/usr/bin/env bash
# Contract checks: buf lint, buf format, and buf breaking against the
# baseline of released contracts (proto/released.binpb). Exits non-zero on
# any finding.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
buf="$root/.tools/bin/buf"
[ -x "$buf" ] || { echo "check-contracts: buf is missing; run bash build-support/install-tools.sh" >&2; exit 1; }
cd "$root"

echo "check-contracts: buf lint" >&2
"$buf" lint

echo "check-contracts: buf format --diff --exit-code" >&2
"$buf" format --diff --exit-code

echo "check-contracts: buf breaking against proto/released.binpb" >&2
[ -f proto/released.binpb ] || { echo "check-contracts: proto/released.binpb is missing" >&2; exit 1; }
"$buf" breaking --against proto/released.binpb

# Every released package must still be in the baseline: the list and the
# baseline change together, through release-contracts.sh.
expected="$(grep -vE '^\s*(#|$)' proto/released-packages.txt | sort)"
actual="$("$buf" build proto/released.binpb -o -#format=json \
  | python3 -c 'import json,sys; print("\n".join(sorted({f.get("package","") for f in json.load(sys.stdin)["file"] if f.get("package","").startswith("ferrymesh.")})))')"
if [ "$expected" != "$actual" ]; then
  echo "check-contracts: proto/released.binpb holds [$(echo $actual)] but proto/released-packages.txt lists [$(echo $expected)]." >&2
  echo "check-contracts: run bash build-support/release-contracts.sh and commit both." >&2
  exit 1
fi
echo "check-contracts: ok" >&2
