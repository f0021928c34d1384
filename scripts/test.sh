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
APT_PACKAGES=(mender-artifact mender-client postgresql xz-utils zstd openssl libubootenv-tool u-boot-tools grub-common python3-venv)

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

# ---------------------------------------------------------------- PostgreSQL
# For updraft-server's tests only: its API suite (server-stub/tests/api.rs)
# runs on SQLite and on PostgreSQL. Start Debian's PostgreSQL cluster, make a
# test role, drop the per-test databases (updraft_t_*) of earlier runs, and
# point the tests at it. Skipped when UPDRAFT_TEST_POSTGRES_URL is already set
# or PostgreSQL is not installed.
if [ -z "${UPDRAFT_TEST_POSTGRES_URL:-}" ] && command -v pg_lsclusters >/dev/null; then
  as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; else sudo -u postgres "$@"; fi
  }
  pg_line=$(pg_lsclusters -h | head -n1)
  if [ -n "$pg_line" ]; then
    read -r pg_ver pg_cluster pg_port _ <<<"$pg_line"
    say "starting PostgreSQL $pg_ver/$pg_cluster on port $pg_port for updraft-server's tests"
    as_postgres pg_ctlcluster "$pg_ver" "$pg_cluster" start 2>/dev/null || true
    as_postgres psql -p "$pg_port" -qAtX -v ON_ERROR_STOP=1 <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'updraft_test') THEN
    CREATE ROLE updraft_test LOGIN SUPERUSER PASSWORD 'updraft_test';
  END IF;
END $$;
SELECT format('DROP DATABASE %I', datname) FROM pg_database WHERE datname LIKE 'updraft\_t\_%' \gexec
SQL
    export UPDRAFT_TEST_POSTGRES_URL="postgres://updraft_test:updraft_test@127.0.0.1:$pg_port/postgres"
    export UPDRAFT_REQUIRE_POSTGRES=1
  fi
fi

say "tests (std: ring SHA-256, zlib-rs inflate, xz)"
# The packages above are installed now: a test that would skip for want of
# mender, mkenvimage or imgtool fails instead.
export UPDRAFT_REQUIRE_TOOLS=1 UPDRAFT_REQUIRE_MENDER=1
cargo test --workspace

say "tests of updraft-core without std (miniz_oxide inflate, sha2, no RSA, no xz)"
cargo test -p updraft-core --no-default-features

say "the README's main command, on debug builds: scripts/demo.sh --exit"
UPDRAFT_DEMO_PROFILE=dev bash scripts/demo.sh --exit

say "fuzz smoke run (reader, reader_gen, tar, boot_env, mcuboot; ${FUZZ_SECONDS:-20} s each)"
FUZZ_SECONDS=${FUZZ_SECONDS:-20} bash scripts/fuzz-smoke.sh
