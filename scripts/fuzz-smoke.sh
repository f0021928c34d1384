#!/usr/bin/env bash
# Fuzz smoke run: each fuzz target in fuzz/ for a short time. Exits non-zero
# if a target crashes (the input is kept under fuzz/artifacts/<target>/).
#
#   scripts/fuzz-smoke.sh                      30 s per target, libFuzzer
#   FUZZ_SECONDS=300 scripts/fuzz-smoke.sh     longer
#   FUZZ_MODE=standalone scripts/fuzz-smoke.sh no cargo-fuzz, no libFuzzer
#   FUZZ_SANITIZER=address scripts/fuzz-smoke.sh   libFuzzer + ASan
#   FUZZ_FEATURES=std scripts/fuzz-smoke.sh    fuzz updraft-core's std build
#   FUZZ_TARGETS="reader tar" scripts/fuzz-smoke.sh  a subset
#
# Modes (FUZZ_MODE):
#   cargo-fuzz (default)  `cargo fuzz run --sanitizer none`: coverage-guided
#                         libFuzzer on stable Rust (the sancov flags are
#                         stable -C options). Installs cargo-fuzz if missing.
#                         FUZZ_SANITIZER=address adds ASan, which needs the
#                         nightly-only -Zsanitizer: it sets RUSTC_BOOTSTRAP=1.
#   standalone            the same targets built as plain binaries: a seeded,
#                         format-aware random mutator, not coverage guided.
#
# Seed corpora are made fresh in fuzz/corpus/ (git-ignored): small artifacts
# from Debian's mender-artifact (when installed), and tars from GNU tar.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

SECONDS_EACH=${FUZZ_SECONDS:-30}
MODE=${FUZZ_MODE:-cargo-fuzz}
SANITIZER=${FUZZ_SANITIZER:-none}
TARGETS=${FUZZ_TARGETS:-reader reader_gen tar boot_env mcuboot}
FEATURES=()
[ -n "${FUZZ_FEATURES:-}" ] && FEATURES=(--features "$FUZZ_FEATURES")
# Own target dir: fuzz builds use other RUSTFLAGS than the main workspace.
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$root/fuzz/target}

say() { printf '\n==> %s\n' "$*"; }

# ---------------------------------------------------------------- seeds
make_seeds() {
  local tmp c
  tmp=$(mktemp -d)
  mkdir -p fuzz/corpus/reader fuzz/corpus/tar fuzz/corpus/reader_gen
  # reader_gen: the empty input is the generator's usual, valid artifact.
  : > fuzz/corpus/reader_gen/empty
  (
    cd "$tmp"
    mkdir -p tree/dir && echo hello > tree/a.txt && head -c 1500 /dev/urandom > tree/dir/b.bin
    touch "tree/dir/$(printf 'n%.0s' {1..120})"
    tar --format=gnu -cf gnu.tar tree
    tar --format=pax -cf pax.tar tree
    tar --format=ustar -cf ustar.tar tree/a.txt tree/dir/b.bin
    if command -v mender-artifact >/dev/null; then
      head -c 3000 /dev/urandom > rootfs.ext4
      printf '#!/bin/sh\necho hi\n' > ArtifactInstall_Enter_00
      openssl ecparam -name prime256v1 -genkey -noout -out ec.key 2>/dev/null
      for comp in none gzip lzma; do
        mender-artifact write rootfs-image --no-progress -n seed -t board -f rootfs.ext4 \
          --compression "$comp" -o "plain-$comp.mender" >/dev/null
        mender-artifact write rootfs-image --no-progress -n seed -t board -t other -f rootfs.ext4 \
          --compression "$comp" -k ec.key -s ArtifactInstall_Enter_00 \
          -p rootfs-image.extra:1 -o "full-$comp.mender" >/dev/null
      done
    fi
  )
  for f in "$tmp"/*.tar "$tmp"/*.mender; do
    [ -e "$f" ] || continue
    c=$(basename "$f")
    # First byte 0: feed whole. Second copy: chunks of 3, 512*... (see
    # updraft_fuzz::split_prefix).
    { printf '\x00'; cat "$f"; } > "fuzz/corpus/tar/$c"
    { printf '\x03\x02\x81\xff'; cat "$f"; } > "fuzz/corpus/tar/split-$c"
    case $c in
      *.mender)
        { printf '\x00'; cat "$f"; } > "fuzz/corpus/reader/$c"
        { printf '\x03\x02\x81\xff'; cat "$f"; } > "fuzz/corpus/reader/split-$c" ;;
    esac
  done
  rm -rf "$tmp"
}

# ---------------------------------------------------------------- run
crashed=()
start_all=$EPOCHREALTIME
log=$(mktemp)
trap 'rm -f "$log"' EXIT

say "making seed corpora in fuzz/corpus/"
make_seeds

case $MODE in
  cargo-fuzz)
    if ! cargo fuzz --version >/dev/null 2>&1; then
      say "installing cargo-fuzz"
      cargo install cargo-fuzz --locked
    fi
    if [ "$SANITIZER" != none ]; then
      export RUSTC_BOOTSTRAP=1
    fi
    # cargo caches rustc's answers in .rustc_info.json without keying them
    # on RUSTC_BOOTSTRAP: a failed probe from a run without it would stick.
    rm -f "$CARGO_TARGET_DIR/.rustc_info.json"
    say "building the fuzz targets (libFuzzer, sanitizer: $SANITIZER)"
    cargo fuzz build --sanitizer "$SANITIZER" "${FEATURES[@]}"
    for t in $TARGETS; do
      say "fuzzing $t for ${SECONDS_EACH}s"
      if ! cargo fuzz run --sanitizer "$SANITIZER" "${FEATURES[@]}" "$t" -- \
          -max_total_time="$SECONDS_EACH" -timeout=20 -rss_limit_mb=2048 \
          -print_final_stats=1 2>"$log"; then
        crashed+=("$t")
        tail -n 60 "$log"
      else
        grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)' "$log" || true
      fi
    done
    ;;
  standalone)
    say "building the fuzz targets (standalone, no libFuzzer)"
    (cd fuzz && cargo build --release --bins "${FEATURES[@]}")
    for t in $TARGETS; do
      say "fuzzing $t for ${SECONDS_EACH}s"
      if ! FUZZ_SECONDS=$SECONDS_EACH "$CARGO_TARGET_DIR/release/$t"; then
        crashed+=("$t")
      fi
    done
    ;;
  *)
    echo "FUZZ_MODE must be cargo-fuzz or standalone, not '$MODE'" >&2
    exit 2
    ;;
esac

elapsed=$(awk -v a="$start_all" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')
if [ ${#crashed[@]} -gt 0 ]; then
  say "CRASH in: ${crashed[*]} (inputs under fuzz/artifacts/; ${elapsed}s)"
  ls -l fuzz/artifacts/*/ 2>/dev/null || true
  exit 1
fi
say "fuzz smoke: no crash in ${TARGETS// /, } (${elapsed}s)"
