#!/usr/bin/env bash
# Benchmark of the artifact reader: `updraft artifact validate` against
# Debian's `mender-artifact validate` and against the limit, hashing the
# payload once with `openssl dgst -sha256`, on RSA-3072-signed artifacts with
# a random payload, uncompressed and gzip.
#
#   scripts/bench-reader.sh                 256 MiB payload, 5 rounds
#   BENCH_RUNS=9 scripts/bench-reader.sh    9 rounds
#   BENCH_MIB=64 scripts/bench-reader.sh    a smaller payload (quick look)
#
# Times are wall-clock with the file cache warm (every file is read once
# before timing, so the disk is not measured). The runs are interleaved: each
# round runs every command once, so a burst of load elsewhere on the machine
# hits all of them alike. The report gives the median of the rounds (the
# figure to compare) and the best. Peak RSS is GNU time's %M (maximum
# resident set size), the largest of the runs.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${BENCH_RUNS:-5}
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
load=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- measure
# run LABEL COMPRESSION CMD...: runs CMD once (output discarded; a failing
# run aborts the benchmark) and appends "LABEL COMPRESSION seconds rss_kib"
# to runs. The wall time is taken with bash's microsecond EPOCHREALTIME
# around GNU time (whose own %e has only 10 ms resolution); %M gives the
# peak RSS.
run() {
  local label=$1 comp=$2; shift 2
  local t0 t1
  t0=$EPOCHREALTIME
  if ! /usr/bin/time -f '%e %M' -o time.out "$@" > cmd.out 2>&1; then
    echo "benchmark command failed: $*" >&2
    cat cmd.out >&2
    exit 1
  fi
  t1=$EPOCHREALTIME
  awk -v l="$label" -v c="$comp" -v a="$t0" -v b="$t1" 'END { printf "%s %s %.4f %s\n", l, c, b - a, $2 }' time.out >> runs
}

: > runs
say "timing: $RUNS interleaved rounds"
for ((round = 1; round <= RUNS; round++)); do
  run openssl-sha256 - openssl dgst -sha256 rootfs.ext4
  for comp in none gzip; do
    run updraft "$comp" "$updraft" artifact validate --no-progress -k sign.pub "bench-$comp.mender"
    run mender-artifact "$comp" mender-artifact validate -k sign.pub "bench-$comp.mender"
  done
done
# One line per command: "LABEL COMPRESSION median best max_rss_kib".
awk '
  { key = $1 " " $2; if (!(key in n)) order[++keys] = key
    t[key, ++n[key]] = $3; if ($4 > rss[key]) rss[key] = $4 }
  END {
    for (k = 1; k <= keys; k++) {
      key = order[k]; m = n[key]
      for (i = 1; i <= m; i++) v[i] = t[key, i]
      for (i = 2; i <= m; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
      med = (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
      printf "%s %.4f %.4f %d\n", key, med, v[1], rss[key]
    }
  }' runs > results
while read -r label comp med best rss; do
  say "$(printf '%-16s %-5s median %6.3f s  best %6.3f s  %7.1f MiB' "$label" "$comp" "$med" "$best" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')")"
done < results

# ---------------------------------------------------------------- report
sizes=$(stat -c '%n=%s' bench-none.mender bench-gzip.mender | tr '\n' ' ')
echo
echo "Reader benchmark: ${MIB} MiB random payload, RSA 3072 signature, median of $RUNS interleaved rounds, warm cache"
echo "updraft $("$updraft" --version | awk '{ print $2 }'), $(mender-artifact --version 2>&1 | head -n1), $(openssl version | awk '{ print $1, $2 }')"
echo "CPU: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(nproc) cores, load average before: $load"
echo "artifact sizes (bytes): $sizes"
echo
awk -v mib="$MIB" '
  { label[NR] = $1; comp[NR] = $2; secs[NR] = $3; best[NR] = $4; rss[NR] = $5
    if ($1 == "openssl-sha256") limit = $3
    if ($1 == "mender-artifact") ma[$2] = $3 }
  END {
    fmt = "%-16s %-11s %8s %8s %8s %13s %9s %17s\n"
    printf fmt, "tool", "compression", "median s", "best s", "MB/s", "peak RSS MiB", "x limit", "x mender-artifact"
    printf fmt, "----", "-----------", "--------", "------", "----", "------------", "-------", "-----------------"
    for (i = 1; i <= NR; i++) {
      vs_ma = (label[i] == "updraft" && ma[comp[i]] > 0) ? sprintf("%.2f", ma[comp[i]] / secs[i]) : "-"
      c = comp[i] == "-" ? "(payload)" : comp[i]
      printf fmt, label[i], c, sprintf("%.3f", secs[i]), sprintf("%.3f", best[i]), sprintf("%.0f", mib / secs[i]),
        sprintf("%.1f", rss[i] / 1024), sprintf("%.2f", limit / secs[i]), vs_ma
    }
    print ""
    print "MB = 2^20 bytes: MB/s is payload MiB / median seconds. x limit = openssl seconds / tool seconds"
    print "(1.00 = as fast as hashing the payload once). x mender-artifact = its seconds / updraft seconds"
    print "(medians)."
  }' results

echo
echo "Targets (on medians):"
awk '
  function verdict(ok) { return ok ? "pass" : "MISS" }
  { secs[$1 "/" $2] = $3; rss[$1 "/" $2] = $5 }
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
