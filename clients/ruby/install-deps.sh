#!/usr/bin/env bash
# Installs what clients/ruby needs for its tests and generate.sh on Debian
# bookworm, as root. Idempotent: installs only what is missing.
#
#  * Debian packages: Ruby, the grpc and google-protobuf gems (ruby-grpc 1.51,
#    ruby-google-protobuf 3.21; no rubygems.org access needed), rake, the grpc
#    Ruby code generator (protobuf-compiler-grpc) and Maven (to fetch protoc).
#  * protoc 31.1 from Maven Central (com.google.protobuf:protoc:4.31.1), the
#    way clients/java's build gets it, into clients/ruby/.tools; generate.sh
#    checks its sha256.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROTOC_VERSION="$(sed -n 's/^PROTOC_VERSION=\([^ ]*\).*/\1/p' "$here/generate.sh")"

packages=(ruby ruby-grpc ruby-google-protobuf protobuf-compiler-grpc rake maven)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

protoc="$here/.tools/protoc-$PROTOC_VERSION-linux-x86_64.exe"
if [[ ! -x "$protoc" ]]; then
  mkdir -p "$here/.tools"
  mvn -q -B dependency:copy \
    -Dartifact="com.google.protobuf:protoc:$PROTOC_VERSION:exe:linux-x86_64" \
    -DoutputDirectory="$here/.tools"
  chmod +x "$protoc"
fi

# minitest ships with Ruby as a bundled gem; fail here, not in the suite, if
# this Ruby lacks it.
ruby -e 'require "minitest/autorun"; require "grpc"; require "google/protobuf"; exit!(0)'
