#!/usr/bin/env bash
# vivirk against PostgreSQL, one command (Debian 12, as root):
#
#   benches/compare.sh [--seconds 20] [--rounds 3] [--warmup 5] [--events 1000000] [--courses 10000]
#                      [--connections 64] [--keep]
#
# Installs PostgreSQL and wrk from Debian's packages if missing, builds the release binary, then
# hands over to benches/compare.py (seed, load, alternate the runs, print the table). Both systems'
# data live in one scratch directory under ${COMPARE_WORK_PARENT:-/var/tmp} (disk-backed; not
# /tmp, which may be a tmpfs where fsync is free), removed at the end unless --keep. The table is
# also written to ${CARGO_TARGET_DIR:-target}/compare/.
set -euo pipefail
cd "$(dirname "$0")/.."

keep=0
args=()
for a in "$@"; do
    if [[ $a == --keep ]]; then keep=1; else args+=("$a"); fi
done

if [[ $(id -u) != 0 ]]; then
    echo "compare.sh runs PostgreSQL as the postgres user and installs packages: run it as root" >&2
    exit 2
fi

pg_bin=/usr/lib/postgresql/15/bin
missing=()
[[ -x $pg_bin/postgres && -x $pg_bin/pgbench && -x $pg_bin/psql ]] || missing+=(postgresql)
command -v wrk >/dev/null || missing+=(wrk)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
    # The package starts Debian's own cluster; this script runs a throwaway one on its own port.
fi

target=${CARGO_TARGET_DIR:-target}
cargo build --release --locked

work=$(mktemp -d "${COMPARE_WORK_PARENT:-/var/tmp}/vivirk-compare.XXXXXX")
cleanup() {
    # compare.py stops what it started; this catches an interrupted run.
    for f in "$work"/vivirk-*.pid; do
        [[ -f $f ]] && kill "$(cat "$f")" 2>/dev/null || true
    done
    if [[ -f $work/pg/postmaster.pid ]]; then
        runuser -u postgres -- "$pg_bin/pg_ctl" -D "$work/pg" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if ((keep)); then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

python3 benches/compare.py --binary "$target/release/vivirk" --work "$work" --results "$target/compare" \
    --pg-bin "$pg_bin" "${args[@]}"
