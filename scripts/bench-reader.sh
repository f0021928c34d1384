#!/usr/bin/env bash
# Benchmark of the artifact reader: `updraft artifact validate` against
# Debian's `mender-artifact validate` and against the limit, hashing the
# payload once with `openssl dgst -sha256`, on RSA-3072-signed artifacts with
# a random payload, uncompressed and gzip.
#
#   scripts/bench-reader.sh                 256 MiB payload, best of 3 runs
#   BENCH_RUNS=5 scripts/bench-reader.sh    best of 5
#   BENCH_MIB=64 scripts/bench-reader.sh    a smaller payload (quick look)
#
# Times are wall-clock, best of BENCH_RUNS runs, with the file cache warm
# (every file is read once before timing, so the disk is not measured).
# Peak RSS is GNU time's %M (maximum resident set size), the largest of the
# runs.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${BENCH_RUNS:-3}
MIB=${BENCH_MIB:-256}

say() { printf '==> %s\n' "$*" >&2; }

# ---------------------------------------------------------------- tools
need=()
[ -x /usr/bin/time ] || need+=(time)
command -v mender-artifact >/dev/null || need+=(mender-artifact)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  say "installing Debian packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

say "building updraft (release)"
cargo build --release -q -p updraft-linux
updraft="$(realpath "${CARGO_TARGET_DIR:-target}")/release/updraft"

# ---------------------------------------------------------------- inputs
mkdir -p /var/tmp
work=$(mktemp -d /var/tmp/updraft-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"

say "making a ${MIB} MiB random payload, an RSA 3072 key and two signed artifacts"
head -c "${MIB}M" /dev/urandom > rootfs.ext4
openssl genrsa -traditional -out sign.key 3072 2>/dev/null
openssl rsa -in sign.key -pubout -out sign.pub 2>/dev/null
for comp in none gzip; do
  mender-artifact write rootfs-image --no-progress -n bench -t bench \
    -f rootfs.ext4 -k sign.key --compression "$comp" -o "bench-$comp.mender" >/dev/null
done

# Warm the file cache: read every input once.
cat rootfs.ext4 bench-none.mender bench-gzip.mender > /dev/null

# ---------------------------------------------------------------- measure
# measure LABEL COMPRESSION CMD...: runs CMD $RUNS times (output discarded;
# a failing run aborts the benchmark) and appends
# "LABEL COMPRESSION best_seconds max_rss_kib" to results.
# The wall time is taken with bash's microsecond EPOCHREALTIME around GNU
# time (whose own %e has only 10 ms resolution); %M gives the peak RSS.
measure() {
  local label=$1 comp=$2; shift 2
  local best="" rss=0 i t0 t1 secs m
  for ((i = 0; i < RUNS; i++)); do
    t0=$EPOCHREALTIME
    if ! /usr/bin/time -f '%e %M' -o time.out "$@" > cmd.out 2>&1; then
      echo "benchmark command failed: $*" >&2
      cat cmd.out >&2
      exit 1
    fi
    t1=$EPOCHREALTIME
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')
    m=$(awk 'END { print $2 }' time.out)
    if [ -z "$best" ] || awk -v s="$secs" -v b="$best" 'BEGIN { exit !(s < b) }'; then
      best=$secs
    fi
    [ "$m" -gt "$rss" ] && rss=$m
  done
  echo "$label $comp $best $rss" >> results
  say "$(printf '%-16s %-5s %8.3f s  %7.1f MiB' "$label" "$comp" "$best" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')")"
}

: > results
say "timing: best of $RUNS runs each"
measure openssl-sha256 - openssl dgst -sha256 rootfs.ext4
for comp in none gzip; do
  measure updraft "$comp" "$updraft" artifact validate --no-progress -k sign.pub "bench-$comp.mender"
  measure mender-artifact "$comp" mender-artifact validate -k sign.pub "bench-$comp.mender"
done

# ---------------------------------------------------------------- report
sizes=$(stat -c '%n=%s' bench-none.mender bench-gzip.mender | tr '\n' ' ')
echo
echo "Reader benchmark: ${MIB} MiB random payload, RSA 3072 signature, best of $RUNS runs, warm cache"
echo "updraft $("$updraft" --version | awk '{ print $2 }'), $(mender-artifact --version 2>&1 | head -n1), $(openssl version | awk '{ print $1, $2 }')"
echo "CPU: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(nproc) cores"
echo "artifact sizes (bytes): $sizes"
echo
awk -v mib="$MIB" '
  { label[NR] = $1; comp[NR] = $2; secs[NR] = $3; rss[NR] = $4
    if ($1 == "openssl-sha256") limit = $3
    if ($1 == "mender-artifact") ma[$2] = $3 }
  END {
    fmt = "%-16s %-11s %8s %8s %13s %9s %17s\n"
    printf fmt, "tool", "compression", "seconds", "MB/s", "peak RSS MiB", "x limit", "x mender-artifact"
    printf fmt, "----", "-----------", "-------", "----", "------------", "-------", "-----------------"
    for (i = 1; i <= NR; i++) {
      vs_ma = (label[i] == "updraft" && ma[comp[i]] > 0) ? sprintf("%.2f", ma[comp[i]] / secs[i]) : "-"
      c = comp[i] == "-" ? "(payload)" : comp[i]
      printf fmt, label[i], c, sprintf("%.3f", secs[i]), sprintf("%.0f", mib / secs[i]),
        sprintf("%.1f", rss[i] / 1024), sprintf("%.2f", limit / secs[i]), vs_ma
    }
    print ""
    print "MB = 2^20 bytes: MB/s is payload MiB / seconds. x limit = openssl seconds / tool seconds"
    print "(1.00 = as fast as hashing the payload once). x mender-artifact = its seconds / updraft seconds."
  }' results

echo
echo "Targets:"
awk '
  function verdict(ok) { return ok ? "pass" : "MISS" }
  { secs[$1 "/" $2] = $3; rss[$1 "/" $2] = $4 }
  END {
    limit = secs["openssl-sha256/-"]
    r_none = limit / secs["updraft/none"]; r_gz = limit / secs["updraft/gzip"]
    a_none = secs["mender-artifact/none"] / secs["updraft/none"]
    a_gz = secs["mender-artifact/gzip"] / secs["updraft/gzip"]
    peak = rss["updraft/none"] > rss["updraft/gzip"] ? rss["updraft/none"] : rss["updraft/gzip"]
    printf "  %-46s %-8s %s\n", "updraft, uncompressed: >= 0.95x limit", sprintf("%.2fx", r_none), verdict(r_none >= 0.95)
    printf "  %-46s %-8s %s\n", "updraft, gzip:         >= 0.92x limit", sprintf("%.2fx", r_gz), verdict(r_gz >= 0.92)
    printf "  %-46s %-8s %s\n", "updraft ahead of mender-artifact, uncompressed", sprintf("%.2fx", a_none), verdict(a_none > 1)
    printf "  %-46s %-8s %s\n", "updraft ahead of mender-artifact, gzip", sprintf("%.2fx", a_gz), verdict(a_gz > 1)
    printf "  %-46s %-8s %s\n", "updraft peak RSS < 8 MiB", sprintf("%.1f MiB", peak / 1024), verdict(peak < 8 * 1024)
  }' results
