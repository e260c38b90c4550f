#!/usr/bin/env bash
# Installs every build, test and demo dependency of tocsin from Debian 12's packages.
# Run as root (or through sudo). Nothing else is downloaded at build or test time.
set -euo pipefail

packages=(
  # toolchain
  g++ cmake ninja-build ccache pkg-config
  # libraries
  libboost1.81-dev libboost-url1.81-dev libssl-dev nlohmann-json3-dev libyaml-cpp-dev
  libre2-dev libspdlog-dev libfmt-dev libcli11-dev libsystemd-dev libprotobuf-dev
  protobuf-compiler libsnappy-dev libsqlite3-dev libhiredis-dev libcpp-httplib-dev catch2 libhowardhinnant-date-dev tzdata
  # test and demo peers
  prometheus prometheus-node-exporter redis-server curl openssl python3 systemd
)

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  sudo_cmd=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}"
