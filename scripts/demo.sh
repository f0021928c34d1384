#!/usr/bin/env bash
# The README's main command: start updraft-server on its embedded defaults
# (SQLite and files under its data directory, a self-signed certificate made
# on first start, an admin account printed once), then show a device being
# updated through it: our daemon (`updraft daemon`) on a device made of files
# (two slot images, a redundant U-Boot env, a state file).
#
#   scripts/demo.sh          keep the server running afterwards (Ctrl-C stops)
#   scripts/demo.sh --exit   stop once the device is updated (exit 1 if it was not)
#
# Everything lives in ./updraft-demo (made afresh on each run): server/ is
# the server's data directory, device/ the device.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
exit_after=0
[ "${1:-}" = "--exit" ] && exit_after=1

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

need=()
command -v mkenvimage >/dev/null || need+=(u-boot-tools)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]} (Debian)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# UPDRAFT_DEMO_PROFILE=dev uses debug builds (the test command runs the demo
# that way, reusing what the tests built).
profile=${UPDRAFT_DEMO_PROFILE:-release}
say "building updraft-server and updraft ($profile)"
cargo build --profile "$profile" -q -p updraft-server -p updraft-linux
dir=$profile; [ "$profile" = dev ] && dir=debug
bin="$(realpath "${CARGO_TARGET_DIR:-target}")/$dir"
updraft="$bin/updraft"

demo="$root/updraft-demo"
rm -rf "$demo"
mkdir -p "$demo/server" "$demo/device"
server_pid=""; device_pid=""
cleanup() {
  [ -n "$device_pid" ] && kill "$device_pid" 2>/dev/null || true
  pkill -f "updraft daemon -c $demo/device/updraft.conf" 2>/dev/null || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

say "starting updraft-server (data directory $demo/server)"
"$bin/updraft-server" --data-dir "$demo/server" >"$demo/server.out" 2>"$demo/server.log" &
server_pid=$!
for _ in $(seq 100); do
  grep -q '^Updraft server on' "$demo/server.out" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$demo/server.log" >&2; exit 1; }
  sleep 0.1
done
sed 's/^/  [server] /' "$demo/server.out"
email=$(sed -n 's/^Created the admin account \([^ ]*\) with password: .*/\1/p' "$demo/server.out")
password=$(sed -n 's/^Created the admin account [^ ]* with password: //p' "$demo/server.out")
cert=$(sed -n 's/^Generated a self-signed certificate: //p' "$demo/server.out")
url=https://127.0.0.1:8443
api() { curl -sS --fail-with-body --cacert "$cert" -H "Authorization: Bearer $token" "$@"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
token=$(curl -sS --fail-with-body --cacert "$cert" -u "$email:$password" -X POST "$url/api/management/v1/useradm/auth/login")
echo "  logged in as $email"

say "making a device: slots A and B as files, a U-Boot env, running release-1"
dev="$demo/device"
head -c 4M /dev/urandom >"$dev/a.img"   # slot A: the image it runs
: >"$dev/b.img"                         # slot B: empty
echo "device_type=demo-board" >"$dev/device_type"
echo "artifact_name=release-1" >"$dev/artifact_info"
printf '#!/bin/sh\necho mac=52:54:00:de:00:01\n' >"$dev/identity"; chmod +x "$dev/identity"
mkdir "$dev/inventory"
printf 'mender_boot_part=2\nmender_boot_part_hex=2\nupgrade_available=0\nbootcount=0\nbootlimit=1\n' >"$dev/env.txt"
mkenvimage -r -s 0x4000 -o "$dev/env1" "$dev/env.txt"
cp "$dev/env1" "$dev/env2"
printf '%s 0x0 0x4000\n%s 0x0 0x4000\n' "$dev/env1" "$dev/env2" >"$dev/fw_env.config"
openssl ecparam -name prime256v1 -genkey -noout -out "$demo/sign.key" 2>/dev/null
openssl ec -in "$demo/sign.key" -pubout -out "$dev/artifact-verify-key.pem" 2>/dev/null
cat >"$dev/updraft.conf" <<EOF
{
  "ServerURL": "$url",
  "ServerCertificate": "$cert",
  "UpdatePollIntervalSeconds": 2,
  "InventoryPollIntervalSeconds": 3600,
  "RetryPollIntervalSeconds": 2,
  "RootfsPartA": "$dev/a.img",
  "RootfsPartB": "$dev/b.img",
  "BootPartitions": [2, 3],
  "ArtifactVerifyKey": "$dev/artifact-verify-key.pem",
  "DataDir": "$dev/data",
  "DeviceTypeFile": "$dev/device_type",
  "ArtifactInfoFile": "$dev/artifact_info",
  "IdentityScript": "$dev/identity",
  "InventoryScriptsDir": "$dev/inventory",
  "RootfsScriptsDir": "$dev/scripts",
  "BootLoader": "uboot",
  "FwEnvConfig": "$dev/fw_env.config",
  "RebootCommand": ["true"],
  "HealthCheckCommand": ["sh", "-c", "cmp -s $dev/b.img $demo/release-2.img"]
}
EOF
echo "  config: $dev/updraft.conf"

# The device: each power-on runs the boot script's logic on the env (what
# U-Boot does with scripts/boot.cmd), then the daemon until it reboots.
(
  while true; do
    echo "  [bootloader] $("$updraft" boot-env boot -c "$dev/fw_env.config" --lock-file "$dev/lock")"
    "$updraft" daemon -c "$dev/updraft.conf" 2>&1 | sed -u 's/^updraft: /  [device] /'
  done
) &
device_pid=$!

say "accepting the device (it asks to be admitted, the operator accepts it)"
for _ in $(seq 100); do
  ids=$(api "$url/api/management/v2/devauth/devices?status=pending" \
    | json "' '.join(x['id']+' '+x['auth_sets'][0]['id'] for x in d)")
  [ -n "$ids" ] && break
  sleep 0.2
done
[ -n "$ids" ] || { echo "the device never asked to be admitted" >&2; exit 1; }
read -r device_id set_id <<<"$ids"
api -X PUT -H 'Content-Type: application/json' -d '{"status":"accepted"}' \
  "$url/api/management/v2/devauth/devices/$device_id/auth/$set_id/status"
echo "  accepted device $device_id"

say "making release-2 (a signed artifact) and uploading it"
head -c 4M /dev/urandom >"$demo/release-2.img"
"$updraft" artifact write rootfs-image --no-progress -n release-2 -t demo-board \
  -f "$demo/release-2.img" -k "$demo/sign.key" -o "$demo/release-2.mender"
api -F size="$(stat -c %s "$demo/release-2.mender")" -F artifact=@"$demo/release-2.mender" \
  "$url/api/management/v1/deployments/artifacts" >/dev/null
echo "  uploaded release-2.mender"

say "deploying release-2 to the device"
deployment=$(api -D - -o /dev/null -H 'Content-Type: application/json' \
  -d "{\"name\":\"release-2 rollout\",\"artifact_name\":\"release-2\",\"devices\":[\"$device_id\"]}" \
  "$url/api/management/v1/deployments/deployments" | tr -d '\r' | sed -n 's|^[Ll]ocation: .*/||p')
for _ in $(seq 600); do
  status=$(api "$url/api/management/v1/deployments/deployments/$deployment" | json "d['status']")
  [ "$status" = finished ] && break
  sleep 0.2
done
[ "$status" = finished ] || echo "the deployment did not finish in 2 minutes" >&2
result=$(api "$url/api/management/v1/deployments/deployments/$deployment/devices" | json "d[0]['status']")
sleep 0.5

say "deployment $deployment: $status, device: $result"
"$updraft" boot-env print -c "$dev/fw_env.config" --lock-file "$dev/lock" mender_boot_part upgrade_available \
  | sed 's/^/  [env] /'
if cmp -s "$dev/b.img" "$demo/release-2.img"; then
  echo "  slot B holds release-2's payload; the device boots it from now on"
fi
[ "$result" = success ] || { echo "the update did not succeed" >&2; exit 1; }

if [ "$exit_after" = 1 ]; then
  exit 0
fi
say "the server keeps running at $url (Ctrl-C stops it and the device)"
cat <<EOF
  Log in:        curl --cacert $cert -u '$email:$password' -X POST $url/api/management/v1/useradm/auth/login
  Devices:       curl --cacert $cert -H "Authorization: Bearer \$TOKEN" $url/api/management/v2/devauth/devices
  Deployments:   curl --cacert $cert -H "Authorization: Bearer \$TOKEN" $url/api/management/v1/deployments/deployments
  The device's config is $dev/updraft.conf; its slots are $dev/a.img and $dev/b.img.
EOF
wait "$server_pid"
