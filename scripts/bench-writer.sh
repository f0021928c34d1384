#!/usr/bin/env bash
# Benchmark: `updraft artifact write rootfs-image` against
# `mender-artifact write rootfs-image` on the same 256 MiB payload, gzip and
# none, RSA-signed. Prints seconds, MB/s, peak RSS and the ratio.
#   BENCH_MB=256 BENCH_RUNS=3 scripts/bench-writer.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${BENCH_MB:-256}
RUNS=${BENCH_RUNS:-3}
command -v mender-artifact >/dev/null || { echo "mender-artifact is missing (scripts/test.sh installs it)" >&2; exit 1; }
[ -x /usr/bin/time ] || { apt-get install -y -qq time >/dev/null; }
cargo build --release -q -p updraft-linux
updraft="$(realpath "${CARGO_TARGET_DIR:-target}")/release/updraft"

work=$(mktemp -d /var/tmp/updraft-bench-writer.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
head -c "${MB}M" /dev/urandom > rootfs.ext4
openssl genrsa -traditional -out rsa.key 3072 2>/dev/null
openssl rsa -in rsa.key -pubout -out rsa.pub 2>/dev/null
cat rootfs.ext4 > /dev/null

# best of RUNS: prints "seconds peak_kib"
measure() {
  local best="" rss=""
  for _ in $(seq "$RUNS"); do
    rm -f out.mender
    local line
    /usr/bin/time -f '%e %M' -o time.txt "$@" >/dev/null 2>&1
    line=$(tail -1 time.txt)
    local t=${line% *} m=${line#* }
    if [ -z "$best" ] || awk "BEGIN{exit !($t < $best)}"; then best=$t; rss=$m; fi
  done
  echo "$best $rss"
}

printf '%-16s %-5s %8s %9s %9s %10s\n' tool comp seconds "MB/s" "RSS MiB" "vs mender"
for comp in gzip none; do
  read -r mt mr < <(measure mender-artifact write rootfs-image --no-progress -n b -t b -f rootfs.ext4 -k rsa.key --compression "$comp" -o out.mender)
  read -r ut ur < <(measure "$updraft" artifact write rootfs-image --no-progress -n b -t b -f rootfs.ext4 -k rsa.key --compression "$comp" -o out.mender)
  mender-artifact validate -k rsa.pub out.mender >/dev/null 2>&1 || { echo "our $comp artifact does not validate" >&2; exit 1; }
  for row in "mender-artifact $mt $mr" "updraft $ut $ur"; do
    set -- $row
    awk -v tool="$1" -v c="$comp" -v t="$2" -v m="$3" -v mb="$MB" -v ref="$mt" \
      'BEGIN{printf "%-16s %-5s %8.2f %9.0f %9.1f %9.2fx\n", tool, c, t, mb/t, m/1024, ref/t}'
  done
done
echo
echo "MB = 2^20 bytes of payload. Targets: updraft >= 2x mender-artifact for both, peak RSS < 16 MiB."
