#!/usr/bin/env bash
# Benchmark: `updraft artifact write rootfs-image` against
# `mender-artifact write rootfs-image` on the same payload, gzip and none,
# RSA-signed. Prints seconds, MB/s, peak RSS and the ratio.
#
#   scripts/bench-writer.sh                          256 MiB random payload, 5 rounds
#   BENCH_RUNS=9 scripts/bench-writer.sh             9 rounds
#   BENCH_MIB=64 scripts/bench-writer.sh             a smaller payload (BENCH_MB works too)
#   BENCH_PAYLOAD=compressible scripts/bench-writer.sh
#                                                    system files instead of random bytes
#                                                    (deflate does real work)
#
# The runs are interleaved: each round runs every command once, so a burst of
# load elsewhere on the machine hits all of them alike. The report gives the
# median of the rounds (the figure to compare) and the best. Wall time from
# bash's EPOCHREALTIME, after a `sync` (untimed) so that writeback of an
# earlier run does not fall into the next; peak RSS is GNU time's %M, the
# largest of the runs.
# Every artifact written is checked with `mender-artifact validate`.
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${BENCH_MIB:-${BENCH_MB:-256}}
RUNS=${BENCH_RUNS:-5}
PAYLOAD=${BENCH_PAYLOAD:-random}
command -v mender-artifact >/dev/null || { echo "mender-artifact is missing (scripts/test.sh installs it)" >&2; exit 1; }
[ -x /usr/bin/time ] || { apt-get install -y -qq time >/dev/null; }
cargo build --release -q -p updraft-linux
updraft="$(realpath "${CARGO_TARGET_DIR:-target}")/release/updraft"

work=$(mktemp -d /var/tmp/updraft-bench-writer.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
case "$PAYLOAD" in
  random) head -c "${MIB}M" /dev/urandom > rootfs.ext4 ;;
  compressible)
    # Executables and libraries, repeated as needed: compresses about 1.4:1
    # with gzip, like a root filesystem.
    find /usr/bin /usr/lib -type f -size +16k 2>/dev/null | sort | awk 'NR <= 4000' > files.txt
    while [ "$(stat -c %s rootfs.ext4 2>/dev/null || echo 0)" -lt $((MIB << 20)) ]; do
      xargs cat < files.txt 2>/dev/null >> rootfs.ext4 || true
    done
    truncate -s "${MIB}M" rootfs.ext4 ;;
  *) echo "BENCH_PAYLOAD must be random or compressible" >&2; exit 1 ;;
esac
openssl genrsa -traditional -out rsa.key 3072 2>/dev/null
openssl rsa -in rsa.key -pubout -out rsa.pub 2>/dev/null
cat rootfs.ext4 > /dev/null
load=$(cut -d' ' -f1-3 /proc/loadavg)

# run LABEL COMP CMD...: one timed run, appends "LABEL COMP seconds rss_kib"
# to runs, then checks the artifact it wrote.
run() {
  local label=$1 comp=$2; shift 2
  local t0 t1
  # Start from a clean page cache: no writeback of an earlier run's output
  # (or mender-artifact's temporary files) running during this one.
  rm -f out.mender
  sync
  t0=$EPOCHREALTIME
  if ! /usr/bin/time -f '%e %M' -o time.txt "$@" > cmd.out 2>&1; then
    echo "benchmark command failed: $*" >&2
    cat cmd.out >&2
    exit 1
  fi
  t1=$EPOCHREALTIME
  awk -v l="$label" -v c="$comp" -v a="$t0" -v b="$t1" 'END { printf "%s %s %.4f %s\n", l, c, b - a, $2 }' time.txt >> runs
  mender-artifact validate -k rsa.pub out.mender >/dev/null 2>&1 || { echo "the $label $comp artifact does not validate" >&2; exit 1; }
}

: > runs
for ((round = 1; round <= RUNS; round++)); do
  for comp in gzip none; do
    run mender-artifact "$comp" mender-artifact write rootfs-image --no-progress -n b -t b -f rootfs.ext4 -k rsa.key --compression "$comp" -o out.mender
    run updraft "$comp" "$updraft" artifact write rootfs-image --no-progress -n b -t b -f rootfs.ext4 -k rsa.key --compression "$comp" -o out.mender
  done
done

echo "Writer benchmark: ${MIB} MiB $PAYLOAD payload, RSA 3072 signature, median of $RUNS interleaved rounds"
echo "CPU: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(nproc) cores, load average before: $load"
echo
awk -v mib="$MIB" '
  { key = $1 " " $2; if (!(key in n)) order[++keys] = key
    t[key, ++n[key]] = $3; if ($4 > rss[key]) rss[key] = $4 }
  END {
    for (k = 1; k <= keys; k++) {
      key = order[k]; m = n[key]
      for (i = 1; i <= m; i++) v[i] = t[key, i]
      for (i = 2; i <= m; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
      med[key] = (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
      best[key] = v[1]
    }
    fmt = "%-16s %-5s %9s %7s %7s %8s %10s\n"
    printf fmt, "tool", "comp", "median s", "best s", "MB/s", "RSS MiB", "vs mender"
    for (k = 1; k <= keys; k++) {
      key = order[k]; split(key, f, " ")
      ref = med["mender-artifact " f[2]]
      printf fmt, f[1], f[2], sprintf("%.3f", med[key]), sprintf("%.3f", best[key]),
        sprintf("%.0f", mib / med[key]), sprintf("%.1f", rss[key] / 1024), sprintf("%.2fx", ref / med[key])
    }
  }' runs
echo
echo "MB = 2^20 bytes of payload, MB/s and ratios from medians. Targets: updraft >= 2x mender-artifact for both, peak RSS < 16 MiB."
