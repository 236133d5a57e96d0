#!/usr/bin/env bash
# FerretDB, a MongoDB-wire server in Go (on SQLite), for the contract suite's real-server cases (MONGODB_TEST_URI).
#
#   .ci/ferretdb.sh build            build (or reuse) the binary; prints its path
#   .ci/ferretdb.sh start DIR PORT   run it in the background on 127.0.0.1:PORT, data and log in DIR; waits until it
#                                    accepts connections
#   .ci/ferretdb.sh stop DIR         stop the one started with DIR
#
# Built from the module source because `go install ...@v1.24.2` gives a binary that panics at start: the module zip
# lacks build/version/version.txt, which FerretDB embeds. The binary is cached under FERRETDB_HOME (default
# ~/.cache/cryptostats/ferretdb); the Go module and build caches are Go's own, so a rebuild is quick.
set -euo pipefail

VERSION=v1.24.2
MODULE=github.com/FerretDB/FerretDB
HOME_DIR="${FERRETDB_HOME:-${HOME:-/root}/.cache/cryptostats/ferretdb}"
BIN="$HOME_DIR/$VERSION/ferretdb"

log() { echo "ferretdb.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

build() {
  if [[ -x "$BIN" ]] && "$BIN" --version 2>/dev/null | grep -q "version: $VERSION"; then
    log "reusing $BIN"
    echo "$BIN"
    return
  fi
  command -v go >/dev/null 2>&1 || die "go is not installed: cannot build FerretDB"
  mkdir -p "$HOME_DIR/$VERSION"
  local work
  work="$(mktemp -d "$HOME_DIR/$VERSION/build.XXXXXX")"
  # shellcheck disable=SC2064  # expand now: `work` is local
  trap "rm -rf '$work'" EXIT

  log "downloading $MODULE@$VERSION and building it (a few minutes on a cold Go cache)"
  # `go mod download MODULE@VERSION` works outside any module and prints where the source was unpacked.
  local info dir
  info="$(go mod download -json "$MODULE@$VERSION")" || die "go mod download failed: $info"
  dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$info")"
  [[ -n "$dir" && -d "$dir" ]] || die "go mod download gave no source directory: $info"

  # The module cache is read-only and has no version.txt: build from a writable copy that has one.
  cp -r "$dir" "$work/src"
  chmod -R u+w "$work/src"
  echo "$VERSION" >"$work/src/build/version/version.txt"
  (cd "$work/src" && go build -buildvcs=false -trimpath -o "$work/ferretdb" ./cmd/ferretdb) || die "go build failed"
  "$work/ferretdb" --version | grep -q "version: $VERSION" || die "the built binary does not report $VERSION"
  mv -f "$work/ferretdb" "$BIN"
  log "built $BIN"
  echo "$BIN"
}

is_running() {  # pid
  [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null
}

start() {
  local dir="${1:?usage: start DIR PORT}" port="${2:?usage: start DIR PORT}"
  [[ -x "$BIN" ]] || die "no binary at $BIN: run '$0 build' first"
  mkdir -p "$dir/data"
  dir="$(cd "$dir" && pwd)"
  if [[ -f "$dir/ferretdb.pid" ]] && is_running "$(cat "$dir/ferretdb.pid")"; then
    die "already running for $dir (pid $(cat "$dir/ferretdb.pid"))"
  fi
  # Telemetry off and no debug HTTP listener: CI has no internet and must not take another port.
  nohup "$BIN" --handler=sqlite --sqlite-url="file:$dir/data/" --listen-addr="127.0.0.1:$port" \
    --telemetry=disable --debug-addr=- --state-dir="$dir" --log-level=warn \
    >"$dir/ferretdb.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$dir/ferretdb.pid"

  local waited=0
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if ! is_running "$pid"; then
      cat "$dir/ferretdb.log" >&2 || true
      die "FerretDB exited before accepting connections (log above)"
    fi
    if ((waited >= 300)); then  # 30 s
      cat "$dir/ferretdb.log" >&2 || true
      stop "$dir"
      die "FerretDB did not accept connections on 127.0.0.1:$port within 30 s (log above)"
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  # Someone else's listener on the port would also accept: make sure ours is the one still alive.
  sleep 0.2
  is_running "$pid" || { cat "$dir/ferretdb.log" >&2 || true; die "FerretDB exited after start (log above)"; }
  log "FerretDB $VERSION listening on 127.0.0.1:$port (pid $pid, data $dir/data)"
}

stop() {
  local dir="${1:?usage: stop DIR}" pid
  [[ -f "$dir/ferretdb.pid" ]] || return 0
  pid="$(cat "$dir/ferretdb.pid")"
  if is_running "$pid"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do is_running "$pid" || break; sleep 0.1; done
    if is_running "$pid"; then
      log "FerretDB (pid $pid) ignored SIGTERM for 5 s: killing it"
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$dir/ferretdb.pid"
  log "stopped FerretDB for $dir"
}

case "${1:-}" in
  build) build ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) echo "usage: $0 build | start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
