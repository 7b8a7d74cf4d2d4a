#!/usr/bin/env bash
# Runs the request fuzzer for a bounded time over a scratch copy of the seed
# corpus. Usage: run_fuzzer.sh FUZZER CORPUS_DIR ARTIFACT_DIR SECONDS
set -euo pipefail
fuzzer=$1 corpus=$2 artifacts=$3 seconds=$4

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$corpus" "$work/corpus"
mkdir -p "$artifacts"

# -timeout: one input taking this long is a finding (a hang), not a slow run.
# -rss_limit_mb: LibTorch and an ASan shadow need more than the 2048 default.
"$fuzzer" -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=30 -max_len=4096 \
  -print_final_stats=1 -artifact_prefix="$artifacts/" "$work/corpus"
