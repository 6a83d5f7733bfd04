#!/usr/bin/env bash
# What the test suite needs besides the virtualenv, provisioned in seconds or refused in
# seconds: `make test` and `.ci/run` both call this before any test runs.
#
#   - chromium (the dashboard's browser tests), nginx-light (the bundle smoke test),
#     wrk (the benchmark smoke test), Java and Node.js with npm (the generated SDKs): Debian
#     packages, installed with apt-get when missing and this user may (root, or
#     passwordless sudo); the Kotlin SDK's okhttp, okio and gson jars, fetched with Maven;
#   - PostgreSQL at TEST_DATABASE_URL and Redis at 127.0.0.1:6379: started when installed
#     locally but down, installed too when absent.
#
# `--check` (or PROVISION=check) installs and starts nothing. Whatever cannot be done is
# reported with the exact command to run, and the script exits 1 before any test starts.
# PROVISION_PATH (default: $PATH plus /usr/sbin and /sbin, where Debian puts nginx) is
# where tools are looked for; tests narrow it to show the refusal.
set -uo pipefail

mode="${PROVISION:-auto}"
[ "${1:-}" = "--check" ] && mode=check
DB_URL="${TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/test}"
LOOKUP="${PROVISION_PATH:-$PATH:/usr/sbin:/sbin}"
todo=()  # commands the user has to run, in order

say() { echo "provision: $*" >&2; }
has() { PATH="$LOOKUP" command -v "$1" >/dev/null 2>&1; }
run_tool() { PATH="$LOOKUP:$PATH" "$@"; }

# How to run a command as root: nothing as root, `sudo -n` when sudo needs no password.
if [ "$(id -u)" = 0 ]; then
  as_root=()
  sudo_hint=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
  as_root=(sudo -n)
  sudo_hint="sudo "
else
  as_root=()
  sudo_hint="sudo "
fi
may_act() { [ "$mode" != check ] && { [ "$(id -u)" = 0 ] || [ ${#as_root[@]} -gt 0 ]; }; }

apt_install() {  # packages... ; returns 0 when installed
  may_act && command -v apt-get >/dev/null 2>&1 || return 1
  say "installing $* with apt-get (once; a minute or two)"
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ---------------------------------------------------------------- Debian packages
packages=()
has chromium || packages+=(chromium)
has nginx || packages+=(nginx-light)
has wrk || packages+=(wrk)
has pg_isready || packages+=(postgresql)
has redis-cli || packages+=(redis-server)
# The SDK tests (tests/e2e/test_sdk_e2e.py): openapi-generator and kotlinc run on Java, tsc
# on Node.js, whose npm installs the pinned compilers into sdk/node_modules.
has java || packages+=(default-jre-headless)
has node || packages+=(nodejs)
has npm || packages+=(npm)
# The Kotlin SDK's runtime jars (okhttp, okio, gson), from Maven Central into the local
# Maven repository where devstack/sdk.py looks (M2_REPOSITORY, else ~/.m2/repository).
M2="${M2_REPOSITORY:-${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}/.m2/repository}"
jars=(com.squareup.okhttp3:okhttp:4.12.0 com.squareup.okio:okio-jvm:3.6.0)
compgen -G "$M2/com/google/code/gson/gson/2.*/gson-2.*.jar" >/dev/null ||
  jars+=(com.google.code.gson:gson:2.13.2)
missing_jars=()
for coordinate in "${jars[@]}"; do
  IFS=: read -r group artifact version <<<"$coordinate"
  [ -f "$M2/${group//.//}/$artifact/$version/$artifact-$version.jar" ] ||
    missing_jars+=("$coordinate")
done
[ ${#missing_jars[@]} -gt 0 ] && ! has mvn && packages+=(maven)
if [ ${#packages[@]} -gt 0 ]; then
  if apt_install "${packages[@]}"; then
    # Debian starts nginx as a service on install; the bundle test runs its own on a
    # spare port, and nothing else should hold port 80.
    if [[ " ${packages[*]} " == *" nginx-light "* ]]; then
      "${as_root[@]}" service nginx stop >/dev/null 2>&1 || true
    fi
  else
    todo+=("${sudo_hint}apt-get install -y ${packages[*]}")
  fi
fi

for coordinate in "${missing_jars[@]}"; do
  get=(mvn -q dependency:get "-Dartifact=$coordinate" "-Dmaven.repo.local=$M2")
  if [ "$mode" != check ] && has mvn; then
    say "fetching $coordinate with Maven"
    run_tool "${get[@]}" >/dev/null 2>&1 && continue
  fi
  todo+=("${get[*]}")
done

# ---------------------------------------------------------------- PostgreSQL
db_host=$(sed -E 's#^[a-z0-9+]+://([^@/]*@)?\[?([^]:/?]*)\]?.*#\2#' <<<"$DB_URL")
local_db=false
case "$db_host" in 127.0.0.1 | localhost | ::1 | "") local_db=true ;; esac
if has pg_isready && ! run_tool pg_isready -q -d "$DB_URL" >/dev/null 2>&1; then
  cluster=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  start=(pg_ctlcluster --skip-systemctl-redirect "$cluster" main start)
  if $local_db && [ -n "$cluster" ] && may_act; then
    say "starting PostgreSQL $cluster"
    "${as_root[@]}" "${start[@]}" >/dev/null 2>&1 || true
    for _ in $(seq 1 30); do run_tool pg_isready -q -d "$DB_URL" && break; sleep 1; done
  fi
  if ! run_tool pg_isready -q -d "$DB_URL"; then
    if $local_db && [ -n "$cluster" ]; then
      todo+=("${sudo_hint}${start[*]}")
    else
      todo+=("start the PostgreSQL server of TEST_DATABASE_URL=$DB_URL")
    fi
  fi
fi
if has psql && run_tool pg_isready -q -d "$DB_URL" 2>/dev/null; then
  if ! error=$(run_tool psql "$DB_URL" -qAtc 'select 1' 2>&1 >/dev/null); then
    db_name=$(sed -E 's#^[^/]*//[^/]*/([^?]*).*#\1#' <<<"$DB_URL")
    if [[ "$error" == *"does not exist"* ]] && $local_db && may_act; then
      say "creating database $db_name"
      "${as_root[@]}" runuser -u postgres -- createdb "$db_name" >/dev/null 2>&1 || true
    fi
    if ! run_tool psql "$DB_URL" -qAtc 'select 1' >/dev/null 2>&1; then
      say "cannot query $DB_URL: ${error//$'\n'/ }"
      if [[ "$error" == *"does not exist"* ]]; then
        todo+=("${sudo_hint}runuser -u postgres -- createdb $db_name")
      else  # usually password authentication on a fresh cluster
        todo+=("${sudo_hint}runuser -u postgres -- psql -c \"ALTER ROLE postgres PASSWORD 'trellis'\"")
        todo+=("export TEST_DATABASE_URL=postgresql://postgres:trellis@127.0.0.1:5432/test")
      fi
    fi
  fi
fi

# ---------------------------------------------------------------- Redis
redis_up() { run_tool redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; }
if has redis-cli && ! redis_up; then
  start_redis=(redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no)
  if may_act && has redis-server; then
    say "starting Redis"
    "${as_root[@]}" env PATH="$LOOKUP:$PATH" "${start_redis[@]}" >/dev/null 2>&1 || true
    for _ in $(seq 1 20); do redis_up && break; sleep 0.5; done
  fi
  redis_up || todo+=("${sudo_hint}redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ''")
fi

if [ ${#todo[@]} -gt 0 ]; then
  say "the test suite cannot run yet. Run:"
  for command in "${todo[@]}"; do echo "  run: $command" >&2; done
  exit 1
fi
say "chromium, nginx, wrk, PostgreSQL ($db_host) and Redis are ready"
