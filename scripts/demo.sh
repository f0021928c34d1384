#!/usr/bin/env bash
# The README's main command, until the server exists: build `updraft`, make a
# signed artifact with Debian's mender-artifact, read and validate it with
# Updraft, then show a tampered copy being rejected.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v mender-artifact >/dev/null; then
  echo "==> installing mender-artifact (Debian)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq mender-artifact >/dev/null
fi

echo "==> building updraft"
cargo build --release -q -p updraft-linux
updraft="$(realpath "${CARGO_TARGET_DIR:-target}")/release/updraft"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
openssl ecparam -name prime256v1 -genkey -noout -out sign.key 2>/dev/null
openssl ec -in sign.key -pubout -out sign.pub 2>/dev/null
head -c 8M /dev/urandom > rootfs.ext4
mender-artifact write rootfs-image --no-progress -n release-2 -t demo-board \
  -f rootfs.ext4 -k sign.key -o release-2.mender

echo; echo "==> updraft artifact read -k sign.pub release-2.mender"
"$updraft" artifact read -k sign.pub release-2.mender
echo; echo "==> updraft artifact validate -k sign.pub release-2.mender"
"$updraft" artifact validate -k sign.pub release-2.mender

echo; echo "==> a copy with one payload byte changed is rejected"
mkdir t && (cd t && tar --warning=no-timestamp -xf ../release-2.mender && gunzip -c data/0000.tar.gz > d.tar \
  && python3 -c "
import sys; b=bytearray(open('d.tar','rb').read()); b[512+1000]^=1; open('d.tar','wb').write(b)" \
  && gzip -c d.tar > data/0000.tar.gz && rm d.tar \
  && tar --format=ustar -cf ../tampered.mender version manifest manifest.sig header.tar.gz data/0000.tar.gz)
if "$updraft" artifact validate -k sign.pub tampered.mender; then
  echo "tampered artifact was accepted: this is a bug" >&2; exit 1
fi
echo "(rejected, as it must be)"
