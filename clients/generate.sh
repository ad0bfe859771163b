#!/usr/bin/env bash
# Regenerates every client's stubs from the single proto/occupancy/v1/occupancy.proto.
# Each language's own generate.sh pins its generator versions, so the output is reproducible;
# CI runs this and fails if the checked-in result differs (`--check`).
#
# Usage: clients/generate.sh [--check] [LANG...]   (LANG: ruby python go node java; default all)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
check=0
langs=()
for arg in "$@"; do
  case "$arg" in
    --check) check=1 ;;
    ruby|python|go|node|java) langs+=("$arg") ;;
    *) echo "usage: clients/generate.sh [--check] [ruby|python|go|node|java ...]" >&2; exit 2 ;;
  esac
done
((${#langs[@]})) || langs=(ruby python go node java)

for lang in "${langs[@]}"; do
  echo "generating $lang stubs" >&2
  bash "$here/$lang/generate.sh"
done

if ((check)); then
  cd "$here"
  # Tracked files that changed, and generated files that are new.
  if ! git diff --exit-code --stat -- . || [ -n "$(git ls-files --others --exclude-standard -- .)" ]; then
    git ls-files --others --exclude-standard -- .
    echo "clients/generate.sh: the checked-in stubs differ from what the proto generates;" \
         "run clients/generate.sh and commit the result" >&2
    exit 1
  fi
  echo "generated stubs match the proto" >&2
fi
