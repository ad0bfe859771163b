#!/usr/bin/env bash
# Installs what the Go client's tests and generate.sh need on a Debian bookworm
# machine that already has Go: protoc (Debian's protobuf-compiler), the pinned
# protoc plugins (into clients/go/.bin) and the module's dependencies.
# Idempotent and non-interactive; run as root.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if ! dpkg-query -W -f='${Status}' protobuf-compiler 2>/dev/null | grep -q 'install ok installed'; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends protobuf-compiler
fi

"$here/generate.sh" --tools-only
(cd "$here" && go mod download)
