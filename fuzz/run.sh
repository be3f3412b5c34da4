#!/usr/bin/env bash
# Fuzzes each target for N seconds (default 60), starting from the committed seeds.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); runs on the stable toolchain without
# sanitizers. Crashing inputs land in fuzz/artifacts/<target>/: copy each one into
# fuzz/fixtures/<target>/ so that `cargo test -p persister-reliability` replays it.
# The last line for each target is libFuzzer's summary (executions, time).
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-60}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

status=0
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    echo "==> fuzzing $target for ${seconds}s"
    if ! cargo fuzz run "$target" --sanitizer none "corpus/$target" "corpus-seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1; then
        echo "!! $target found a crash: see fuzz/artifacts/$target/" >&2
        status=1
    fi
done
exit "$status"
