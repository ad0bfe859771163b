#!/usr/bin/env bash
# Installs what the Node client's test suite and generate.sh need on a Debian
# bookworm machine that already has Node.js 20 and npm: protoc (Debian's
# protobuf-compiler, for generate.sh) and the npm packages pinned in
# package-lock.json (`npm ci`, whose `prepare` step also builds dist/).
# Idempotent and non-interactive; run as root.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export DEBIAN_FRONTEND=noninteractive

if ! command -v protoc >/dev/null 2>&1; then
  apt-get install -y --no-install-recommends protobuf-compiler 2>/dev/null || {
    apt-get update
    apt-get install -y --no-install-recommends protobuf-compiler
  }
fi

for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 || { echo "install-deps.sh: $tool not found (Node.js >= 20 is required)" >&2; exit 1; }
done
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "install-deps.sh: Node.js >= 20 is required, found $(node --version)" >&2
  exit 1
fi

cd "$here"
npm ci --no-audit --no-fund
