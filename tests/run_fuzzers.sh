#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs every libFuzzer target of a sanitizer build for SECONDS each.
# usage: tests/run_fuzzers.sh BUILD_DIR SECONDS
# A crash, a leak or a disagreement with the reference model fails the run
# (exit 1) and leaves the input as BUILD_DIR/<target>-crash-*.
set -euo pipefail
build=$1
seconds=$2
root=$(cd "$(dirname "$0")/.." && pwd)

# target            extra arguments (seed corpus, dictionary)
targets=(
  "pglist/pglist_program_fuzz|"
  "cli/simulate_trace_fuzz|-dict=$root/cli/testdata/simulate.dict $root/cli/testdata/fuzz_seeds"
  "server/config_fuzz|$root/server/daemon/testdata/config_fuzz_seeds"
  "server/services_fuzz|"
  "vfio/vfio_source_fuzz|"
  "dra/dra_fuzz|"
)

for entry in "${targets[@]}"; do
  target=${entry%%|*}
  extra=${entry#*|}
  name=$(basename "$target")
  bin=$build/$target
  if [ ! -x "$bin" ]; then
    echo "FAILED: $bin is missing (build with PHYSPOOL_BUILD_FUZZERS=ON)" >&2
    exit 1
  fi
  corpus=$build/corpus/$name
  log=$build/$name.log
  mkdir -p "$corpus"
  echo "fuzzing $name for $seconds s"
  # shellcheck disable=SC2086  # $extra is a list of arguments
  if ! "$bin" -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=4096 \
      -artifact_prefix="$build/$name-" $extra "$corpus" >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "FAILED: $name (full log: $log)" >&2
    exit 1
  fi
  grep -E "^Done|^stat::number_of_executed_units|cov: " "$log" | tail -n 2
done
