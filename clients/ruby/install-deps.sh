#!/usr/bin/env bash
# Installs what clients/ruby needs to run its tests (`rake test`) and
# generate.sh on Debian bookworm, as root: Ruby, the grpc and protobuf gems as
# Debian packages (no rubygems.org access needed), grpc_tools_ruby_protoc and
# rake. Idempotent: installs only what is missing, and refreshes the package
# lists only then.
set -euo pipefail

packages=(ruby ruby-grpc ruby-google-protobuf ruby-grpc-tools protobuf-compiler protobuf-compiler-grpc rake)

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

# minitest ships with Ruby as a bundled gem; fail here, not in the suite, if
# this Ruby lacks it.
ruby -e 'require "minitest/autorun"; require "grpc"; require "google/protobuf"; exit!(0)'
