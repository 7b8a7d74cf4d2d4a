#!/usr/bin/env bash
# Fails when tests/fuzz/corpus differs from what `request_fuzzer
# --write-seeds` writes now. Regenerate with:
#   build-asan/tests/fuzz/request_fuzzer --write-seeds=tests/fuzz/corpus
# Usage: check_seeds.sh FUZZER CORPUS_DIR
set -euo pipefail
fuzzer=$1 corpus=$2

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$fuzzer" --write-seeds="$work"
# The fuzzer may have added inputs of its own to a corpus it was pointed at:
# only the written seeds must match.
status=0
for seed in "$work"/*; do
  name=$(basename "$seed")
  if ! cmp -s "$seed" "$corpus/$name"; then
    echo "seed $name is missing from or differs in $corpus" >&2
    status=1
  fi
done
exit $status
