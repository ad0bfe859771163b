#!/usr/bin/env bash
# Regenerates the checked-in Go stubs in occupancypb/ from
# proto/occupancy/v1/occupancy.proto. Deterministic: the plugin versions are
# pinned below and protoc must be Debian bookworm's 3.21.12 (its version is
# written into the generated headers, so another protoc would make CI's
# "regenerate and diff" check fail). Callable from any directory.
#
# Usage: generate.sh               regenerate occupancypb/
#        generate.sh --tools-only  only install the pinned plugins (install-deps.sh)
set -euo pipefail

# Pinned code generators. protoc-gen-go matches the google.golang.org/protobuf
# runtime version in go.mod.
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2
PROTOC_VERSION="libprotoc 3.21.12"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
proto_root="$(cd "$here/../../proto" && pwd)"
bin="$here/.bin"

if ! command -v protoc >/dev/null 2>&1; then
  echo "generate.sh: protoc not found; run $here/install-deps.sh (Debian package protobuf-compiler)" >&2
  exit 1
fi
if [[ "$(protoc --version)" != "$PROTOC_VERSION" ]]; then
  echo "generate.sh: need '$PROTOC_VERSION' (Debian bookworm protobuf-compiler), found '$(protoc --version)';" >&2
  echo "the protoc version is written into the generated files, so output would differ from the checked-in stubs" >&2
  exit 1
fi

# Install the plugins into clients/go/.bin (git-ignored) unless the pinned
# versions are already there. `go install pkg@version` ignores this module's
# go.mod, so the plugin versions come only from the pins above.
mkdir -p "$bin"
if [[ "$("$bin/protoc-gen-go" --version 2>/dev/null || true)" != "protoc-gen-go $PROTOC_GEN_GO_VERSION" ]]; then
  GOBIN="$bin" GOFLAGS=-mod=mod go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
fi
if [[ "$("$bin/protoc-gen-go-grpc" --version 2>/dev/null || true)" != "protoc-gen-go-grpc ${PROTOC_GEN_GO_GRPC_VERSION#v}" ]]; then
  GOBIN="$bin" GOFLAGS=-mod=mod go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
fi

if [[ "${1:-}" == "--tools-only" ]]; then
  exit 0
fi

# Generate into a scratch directory, then replace occupancypb/ in one step so
# a failed run never leaves half-written stubs behind.
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
PATH="$bin:$PATH" protoc \
  --proto_path="$proto_root" \
  --go_out="$out" --go_opt=module=github.com/occupancy/occupancy/clients/go \
  --go-grpc_out="$out" --go-grpc_opt=module=github.com/occupancy/occupancy/clients/go \
  occupancy/v1/occupancy.proto

rm -rf "$here/occupancypb"
mkdir -p "$here/occupancypb"
cp "$out"/occupancypb/*.go "$here/occupancypb/"
chmod 644 "$here"/occupancypb/*.go
