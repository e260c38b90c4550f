#!/usr/bin/env bash
# Installs the dependencies, builds tocsin twice and runs the tests:
#   1. Debug with warnings as errors: unit tests and the integration tests (real Prometheus,
#      node_exporter and tocsind processes on 127.0.0.1).
#   2. AddressSanitizer + UndefinedBehaviorSanitizer: the unit tests.
# Build folders: build/debug and build/asan under the checkout (override with TOCSIN_BUILD_ROOT).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build_root=${TOCSIN_BUILD_ROOT:-$root/build}
jobs=${TOCSIN_JOBS:-2}

if [ "${TOCSIN_SKIP_DEPS:-0}" != 1 ]; then
  bash "$root/scripts/install-deps.sh"
fi

# ccache hits across checkouts at different paths need these two settings.
export CCACHE_BASEDIR=$root CCACHE_NOHASHDIR=1
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi

# Line tables only (-g1): sanitizer and crash reports still name files and lines, and the two
# build folders take a fraction of the disk that full debug information needs.
debug_flags=(-DCMAKE_CXX_FLAGS_DEBUG=-g1 -DCMAKE_C_FLAGS_DEBUG=-g1)
free_kib=$(df -Pk "$root" | awk 'NR == 2 { print $4 }')
if [ "${free_kib:-0}" -lt $((8 * 1024 * 1024)) ]; then
  echo "warning: only $((free_kib / 1024)) MiB free under $root; the two builds need about 8 GiB" >&2
fi

echo "== Debug build (warnings are errors)"
cmake -S "$root" -B "$build_root/debug" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTOCSIN_WERROR=ON "${debug_flags[@]}" \
  "${launcher[@]}"
cmake --build "$build_root/debug" -j "$jobs"

echo "== Address and undefined-behaviour sanitizer build"
cmake -S "$root" -B "$build_root/asan" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTOCSIN_WERROR=ON \
  -DTOCSIN_SANITIZE=address,undefined -DTOCSIN_INTEGRATION_TESTS=OFF "${debug_flags[@]}" "${launcher[@]}"
cmake --build "$build_root/asan" -j "$jobs"

echo "== Unit tests under ASan and UBSan"
ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ctest --test-dir "$build_root/asan" --output-on-failure -j "$jobs"

echo "== All tests (unit and integration)"
ctest --test-dir "$build_root/debug" --output-on-failure
