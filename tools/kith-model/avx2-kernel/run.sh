#!/bin/sh
# Builds and runs bench.c on the avx2_mmm_i32_8x8 of the last release build (x86_64 only).
# Usage: tools/kith-model/avx2-kernel/run.sh [K] [CALLS_PER_SAMPLE]
set -eu
here=$(dirname "$0")
target=${CARGO_TARGET_DIR:-target}
new=$(ls -t "$target"/release/build/tract-linalg-*/out/avx2_mmm_i32_8x8.S | head -1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$new" "$work/new.S"
# the old kernel: enter the exact loop directly, under another symbol name
sed -e 's/^\.Lmain_loop_packed_packed_i8i8:$/&\n    jmp .Lold_entry/' \
    -e 's|^\( *\)// Exact loop for any i8|.Lold_entry:\n&|' \
    -e 's/avx2_mmm_i32_8x8_/old_avx2_mmm_i32_8x8_/g' "$new" > "$work/old.S"
cc -O2 -o "$work/bench" "$here/bench.c" "$work/new.S" "$work/old.S" -Wl,-z,noexecstack
"$work/bench" "${1:-512}" "${2:-50}"
