#!/usr/bin/env bash
# A throwaway PostgreSQL server for the postgres sink's tests.
#
#   eval "$(.ci/postgres.sh start)"   # prints export lines; exports them into the caller
#   .ci/postgres.sh stop              # stops the server in $BATCHPILOT_TEST_PG_DIR
#   source .ci/postgres.sh            # the same as the eval line, from a bash script
#
# start installs Debian's postgresql when it is missing, creates a cluster in a
# fresh temporary directory with initdb (as the postgres user: initdb and the
# server refuse to run as root), starts it on 127.0.0.1 on a free port with a
# random password, creates the database batchpilot_test, and prints
#   export BATCHPILOT_TEST_PG_DSN='postgres://postgres:...@127.0.0.1:PORT/batchpilot_test?sslmode=disable'
#   export BATCHPILOT_TEST_PG_DIR='/tmp/batchpilot-pg.XXXX'
# on stdout; progress goes to stderr. The server keeps running until stop. The
# system's own clusters (pg_lsclusters) are not touched.
#
# stop [DIR] stops the server (fast shutdown) and removes DIR, which defaults
# to $BATCHPILOT_TEST_PG_DIR.

# Sourced: run as a child (so that set -e and the helpers stay out of the
# caller's shell) and export what it prints.
if [ "${BASH_SOURCE[0]}" != "$0" ]; then
	__bp_pg_env=$(bash "${BASH_SOURCE[0]}" start) || return 1
	eval "$__bp_pg_env"
	unset __bp_pg_env
	return 0
fi

set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }

pg_bindir() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
	if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
		echo "$d"
	fi
}

install_postgres() {
	log "installing Debian's postgresql"
	export DEBIAN_FRONTEND=noninteractive
	# The package would create and start a "main" cluster on 5432; the tests
	# use their own, so skip it.
	mkdir -p /etc/postgresql-common/createcluster.d
	if [ ! -e /etc/postgresql-common/createcluster.d/batchpilot-ci.conf ]; then
		echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/batchpilot-ci.conf
	fi
	apt-get -o DPkg::Lock::Timeout=120 update -qq >&2
	apt-get -o DPkg::Lock::Timeout=120 install -y -qq --no-install-recommends postgresql >&2
}

# port_free PORT: nothing accepts TCP connections on 127.0.0.1:PORT.
port_free() {
	! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# as_postgres CMD...: run CMD as the postgres user (we are root in CI) or as
# ourselves when we are not root.
as_postgres() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

start() {
	local bindir dir port pw tries
	bindir=$(pg_bindir)
	if [ -z "$bindir" ]; then
		if [ "$(id -u)" != 0 ]; then
			log "PostgreSQL is not installed and installing it needs root: apt-get install postgresql"
			exit 1
		fi
		install_postgres
		bindir=$(pg_bindir)
		[ -n "$bindir" ] || { log "postgresql installed but no initdb/pg_ctl under /usr/lib/postgresql/*/bin"; exit 1; }
	fi
	log "using $("$bindir/postgres" --version)"

	dir=$(mktemp -d "${TMPDIR:-/tmp}/batchpilot-pg.XXXXXX")
	if [ "$(id -u)" = 0 ]; then
		chown postgres:postgres "$dir"
	fi
	chmod 700 "$dir"
	pw=$(od -An -N18 -tx1 /dev/urandom | tr -d ' \n')
	printf '%s\n' "$pw" >"$dir/pwfile"
	if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir/pwfile"; fi
	# Password auth over TCP, as a deployment would have it; trust only on the
	# Unix socket, which lives in the 0700 directory.
	as_postgres "$bindir/initdb" -D "$dir/data" -U postgres --pwfile="$dir/pwfile" \
		--auth-host=scram-sha-256 --auth-local=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log" >&2; log "initdb failed"; exit 1; }
	rm -f "$dir/pwfile"

	# A free port: pick at random, check, and take another if the server
	# could not bind it after all (someone took it in between).
	for tries in 1 2 3 4 5 6 7 8; do
		port=$((20000 + RANDOM % 20000))
		port_free "$port" || continue
		if as_postgres "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
			-o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200" >&2; then
			break
		fi
		log "could not start on port $port (try $tries); server log:"
		tail -n 5 "$dir/server.log" >&2 || true
		port=""
	done
	[ -n "$port" ] || { log "no free port found"; exit 1; }

	as_postgres "$bindir/psql" -X -q -h "$dir" -p "$port" -U postgres -d postgres \
		-c "CREATE DATABASE batchpilot_test" >&2
	log "server on 127.0.0.1:$port, data in $dir (stop: .ci/postgres.sh stop $dir)"
	echo "export BATCHPILOT_TEST_PG_DSN='postgres://postgres:$pw@127.0.0.1:$port/batchpilot_test?sslmode=disable'"
	echo "export BATCHPILOT_TEST_PG_DIR='$dir'"
}

stop() {
	local dir=${1:-${BATCHPILOT_TEST_PG_DIR:-}} bindir
	if [ -z "$dir" ]; then
		log "stop: no directory given and BATCHPILOT_TEST_PG_DIR is unset"
		exit 1
	fi
	case "$dir" in
	*/batchpilot-pg.*) ;;
	*) log "stop: $dir is not a directory this script created"; exit 1 ;;
	esac
	bindir=$(pg_bindir)
	if [ -f "$dir/data/postmaster.pid" ] && [ -n "$bindir" ]; then
		as_postgres "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >&2 || true
	fi
	rm -rf "$dir"
	log "stopped and removed $dir"
}

case "${1:-}" in
start) start ;;
stop) shift; stop "$@" ;;
*)
	echo "usage: $0 start | stop [DIR]   (or: source $0)" >&2
	exit 2
	;;
esac
