#!/usr/bin/env bash
# Entrypoint of drill's registry-free PostgreSQL image (scripts/build-image.sh).
#
# Behaves like the official Docker Hub "postgres" image's entrypoint for the
# parts drill uses:
#   POSTGRES_PASSWORD        required unless POSTGRES_HOST_AUTH_METHOD=trust
#   POSTGRES_USER            superuser name (default: postgres)
#   POSTGRES_DB              database created on first start (default: $POSTGRES_USER)
#   POSTGRES_HOST_AUTH_METHOD  auth for TCP connections (default: scram-sha-256)
#   POSTGRES_INITDB_ARGS     extra initdb arguments (word-split)
#   PGDATA                   data directory (image default /var/lib/postgresql/data)
# *_FILE variants (POSTGRES_PASSWORD_FILE, ...) are honoured too.
# Arguments: "docker run IMAGE -c fsync=off" runs "postgres -c fsync=off".
# On first start: initdb, pg_hba "host all all all <method>", listen on all
# addresses, create POSTGRES_DB through a temporary server that listens only
# on the unix socket, stop it, then exec the real server as PID 1.
# Not implemented: /docker-entrypoint-initdb.d scripts, arbitrary --user uids
# (nss_wrapper), POSTGRES_INITDB_WALDIR.
set -Eeuo pipefail

PROG=docker-entrypoint.sh
log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

# file_env VAR [DEFAULT]: VAR may come from VAR or from the file in VAR_FILE.
file_env() {
	local var=$1 fileVar="${1}_FILE" def="${2:-}"
	if [[ -n ${!var:-} && -n ${!fileVar:-} ]]; then
		die "both $var and $fileVar are set (but are exclusive)"
	fi
	local val=$def
	if [[ -n ${!var:-} ]]; then
		val=${!var}
	elif [[ -n ${!fileVar:-} ]]; then
		val=$(<"${!fileVar}")
	fi
	export "$var"="$val"
	unset "$fileVar"
}

setup_env() {
	file_env POSTGRES_PASSWORD
	file_env POSTGRES_USER postgres
	file_env POSTGRES_DB "$POSTGRES_USER"
	file_env POSTGRES_INITDB_ARGS
	: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
	export POSTGRES_HOST_AUTH_METHOD
	: "${PGDATA:=/var/lib/postgresql/data}"
	export PGDATA
	DATABASE_ALREADY_EXISTS=
	if [[ -s $PGDATA/PG_VERSION ]]; then
		DATABASE_ALREADY_EXISTS=true
	fi
}

create_db_directories() {
	mkdir -p "$PGDATA"
	# may fail on odd mounts; postgres will complain later if it matters
	chmod 00700 "$PGDATA" || :
	mkdir -p /var/run/postgresql || :
	chmod 02777 /var/run/postgresql || :
	if [[ $(id -u) == 0 ]]; then
		find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
		find /var/run/postgresql \! -user postgres -exec chown postgres:postgres '{}' +
	fi
}

verify_minimum_env() {
	if [[ -z ${POSTGRES_PASSWORD:-} && $POSTGRES_HOST_AUTH_METHOD != trust ]]; then
		cat >&2 <<-'EOE'
			docker-entrypoint.sh: error: Database is uninitialized and superuser password is not specified.
			       You must specify POSTGRES_PASSWORD to a non-empty value for the
			       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".

			       You may also use "POSTGRES_HOST_AUTH_METHOD=trust" to allow all
			       connections without a password. This is *not* recommended.
		EOE
		exit 1
	fi
	if [[ $POSTGRES_HOST_AUTH_METHOD == trust ]]; then
		log "warning: POSTGRES_HOST_AUTH_METHOD=trust: every TCP connection is accepted without a password"
	fi
}

init_database_dir() {
	# The password reaches initdb through a pipe, never argv or the log.
	# --pwfile rejects an empty file, hence the trailing newline.
	local -a extra=()
	if [[ -n $POSTGRES_INITDB_ARGS ]]; then
		# word-split like the official image's eval (without evaluating)
		read -r -a extra <<<"$POSTGRES_INITDB_ARGS"
	fi
	initdb --username="$POSTGRES_USER" \
		--pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
		--encoding=UTF8 --locale=en_US.UTF-8 \
		"${extra[@]}"
}

setup_config() {
	local conf=$PGDATA/postgresql.conf
	# listen on all addresses (the image-side default is localhost only)
	if grep -Eq "^[#[:space:]]*listen_addresses[[:space:]]*=" "$conf"; then
		sed -ri "s/^[#[:space:]]*(listen_addresses)[[:space:]]*=[[:space:]]*'[^']*'/\\1 = '*'/" "$conf"
	fi
	grep -Eq "^listen_addresses = '\\*'" "$conf" || printf "listen_addresses = '*'\n" >>"$conf"
	# local (unix socket) stays "trust" as initdb wrote it; TCP needs a password
	{
		printf '\n'
		if [[ $POSTGRES_HOST_AUTH_METHOD == trust ]]; then
			printf '# warning: trust is enabled for all connections\n'
		fi
		printf 'host all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD"
	} >>"$PGDATA/pg_hba.conf"
}

temp_server_start() {
	if [[ ${1:-} == postgres ]]; then shift; fi
	# unix socket only: no TCP client can connect before the final server runs
	set -- "$@" -c listen_addresses='' -p "${PGPORT:-5432}"
	PGUSER="${PGUSER:-$POSTGRES_USER}" \
		pg_ctl -D "$PGDATA" -o "$(printf '%q ' "$@")" -w start
}

temp_server_stop() {
	PGUSER="${PGUSER:-postgres}" pg_ctl -D "$PGDATA" -m fast -w stop
}

process_sql() {
	PGHOST='' PGHOSTADDR='' psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" \
		--no-password --no-psqlrc "$@"
}

setup_db() {
	local exists
	exists=$(process_sql --dbname postgres --set db="$POSTGRES_DB" --tuples-only --no-align <<-'EOSQL'
		SELECT 1 FROM pg_database WHERE datname = :'db' ;
	EOSQL
	)
	if [[ -z $exists ]]; then
		process_sql --dbname postgres --set db="$POSTGRES_DB" <<-'EOSQL'
			CREATE DATABASE :"db" ;
		EOSQL
	fi
}

# "postgres --version" and friends print and exit: no set-up needed
want_help() {
	local arg
	for arg; do
		case $arg in
			-'?' | --help | --describe-config | -V | --version) return 0 ;;
		esac
	done
	return 1
}

main() {
	# "docker run IMAGE -c fsync=off" => "postgres -c fsync=off"
	if [[ $# -eq 0 || ${1:0:1} == - ]]; then
		set -- postgres "$@"
	fi

	if [[ $1 == postgres ]] && ! want_help "$@"; then
		setup_env
		create_db_directories
		if [[ $(id -u) == 0 ]]; then
			# drop root: re-run this script as postgres (no gosu; util-linux setpriv)
			export HOME=/var/lib/postgresql
			exec setpriv --reuid=postgres --regid=postgres --init-groups -- "${BASH_SOURCE[0]}" "$@"
		fi

		if [[ -z $DATABASE_ALREADY_EXISTS ]]; then
			verify_minimum_env
			if [[ -n $(ls -A /docker-entrypoint-initdb.d/ 2>/dev/null) ]]; then
				log "warning: /docker-entrypoint-initdb.d is not supported by this image; ignoring it"
			fi
			init_database_dir
			setup_config
			export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
			temp_server_start "$@"
			if [[ $POSTGRES_DB != postgres ]]; then
				setup_db
			fi
			temp_server_stop
			unset PGPASSWORD
			printf "\nPostgreSQL init process complete; ready for start up.\n\n"
		else
			printf "\nPostgreSQL Database directory appears to contain a database; Skipping initialization\n\n"
		fi
	fi

	exec "$@"
}

main "$@"
