#!/usr/bin/env bash
# The whole test suite. On a fresh Debian 12 machine it first installs what
# the tests need (Debian packages, the thumbv7em target, rustfmt/clippy).
#
#   scripts/test.sh            everything
#   SKIP_INSTALL=1 scripts/test.sh   do not install anything
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }

# ---------------------------------------------------------------- install
APT_PACKAGES=(mender-artifact mender-client xz-utils zstd openssl libubootenv-tool u-boot-tools grub-common python3-venv)

if [ -z "${SKIP_INSTALL:-}" ]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if ! rustup target list --installed | grep -qx thumbv7em-none-eabihf; then
    say "adding the thumbv7em-none-eabihf target"
    rustup target add thumbv7em-none-eabihf
  fi
  # imgtool (PyPI) for the MCUboot tests, in a venv: Debian's Python is
  # "externally managed". The tests look here (or in $IMGTOOL).
  venv=/var/tmp/updraft-imgtool-venv
  if [ -z "${IMGTOOL:-}" ] && ! "$venv/bin/imgtool" version 2>/dev/null | grep -qx 2.5.0; then
    say "installing imgtool 2.5.0 into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q imgtool==2.5.0
  fi
  for c in rustfmt clippy; do
    rustup component list --installed | grep -q "^$c" || rustup component add "$c"
  done
fi

# ---------------------------------------------------------------- checks
say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy (workspace, all targets, -D warnings)"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p updraft-core --no-default-features --all-targets -- -D warnings
cargo clippy -p updraft-boot --no-default-features --features alloc --all-targets -- -D warnings

say "no_std builds for thumbv7em-none-eabihf (default features off)"
for crate in updraft-core updraft-boot updraft-embassy; do
  cargo build -p "$crate" --no-default-features --target thumbv7em-none-eabihf
done
# alloc only adds (RSA signatures, PEM keys) for MCUs with a heap.
cargo build -p updraft-core --no-default-features --features alloc --target thumbv7em-none-eabihf
cargo build -p updraft-boot --no-default-features --features alloc --target thumbv7em-none-eabihf

say "docs (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

say "tests (std: ring SHA-256, zlib-rs inflate, xz)"
cargo test --workspace

say "tests of updraft-core without std (miniz_oxide inflate, sha2, no RSA, no xz)"
cargo test -p updraft-core --no-default-features

say "fuzz smoke run (reader, reader_gen, tar, boot_env, mcuboot; ${FUZZ_SECONDS:-20} s each)"
FUZZ_SECONDS=${FUZZ_SECONDS:-20} bash scripts/fuzz-smoke.sh
