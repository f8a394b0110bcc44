#!/usr/bin/env bash
# Entrypoint of drill's registry-free MariaDB image (scripts/build-image.sh
# mariadb, Debian bookworm packages).
#
# Behaves like the official Docker Hub "mariadb" image's entrypoint for the
# parts drill uses:
#   MARIADB_ROOT_PASSWORD          root password (root@localhost and root@'%');
#                                  required unless one of the next two is set
#   MARIADB_ALLOW_EMPTY_ROOT_PASSWORD  any non-empty value: root has no password
#   MARIADB_RANDOM_ROOT_PASSWORD   any non-empty value: a random root password,
#                                  printed as "GENERATED ROOT PASSWORD: ..."
#   MARIADB_ROOT_HOST              host of the second root account (default '%';
#                                  'localhost' creates none)
#   MARIADB_DATABASE               database created on first start
#   MARIADB_USER, MARIADB_PASSWORD user created on first start (both needed),
#                                  with ALL on MARIADB_DATABASE when that is set
#   MARIADB_USER_HOST              host of that user (default '%')
#   MARIADB_INITDB_SKIP_TZINFO     any non-empty value: do not load the time
#                                  zone tables
# Each MARIADB_X may be given as MYSQL_X instead (MARIADB_ALLOW_EMPTY_ROOT_PASSWORD
# as MYSQL_ALLOW_EMPTY_PASSWORD); MARIADB_X wins when both are set. *_FILE
# variants (MARIADB_ROOT_PASSWORD_FILE, ...) are honoured too.
#
# Arguments: "docker run IMAGE --innodb-flush-log-at-trx-commit=0" runs
# "mariadbd --innodb-flush-log-at-trx-commit=0"; any other command is exec'd
# as is. On an empty data directory (/var/lib/mysql): mariadb-install-db, a
# temporary server listening only on the unix socket, root password, root@'%'
# with ALL PRIVILEGES WITH GRANT OPTION, the database and user, stop, then
# exec mariadbd as user mysql (PID 1), listening on 0.0.0.0:3306 (the image's
# /etc/mysql/mariadb.conf.d/05-drill-docker.cnf) and on the socket
# /run/mysqld/mysqld.sock.
# Not implemented: /docker-entrypoint-initdb.d scripts, *_PASSWORD_HASH,
# replication variables, healthcheck users, automatic upgrades of an existing
# data directory (MARIADB_AUTO_UPGRADE), restoring from a backup archive.
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

# maria_env MYSQL_NAME MARIADB_NAME [DEFAULT]: MARIADB_NAME (or its _FILE)
# wins, else MYSQL_NAME (or its _FILE), else DEFAULT; both end up equal.
maria_env() {
	local my=$1 maria=$2 def=${3:-}
	file_env "$my" "$def"
	file_env "$maria" "${!my}"
	export "$my"="${!maria}"
}

# "mariadbd --version" and friends print and exit: no set-up needed
want_help() {
	local arg
	for arg; do
		case $arg in
			-'?' | --help | --print-defaults | -V | --version) return 0 ;;
		esac
	done
	return 1
}

# server_config NAME: value of NAME in "mariadbd --verbose --help" (read once
# by read_server_config; it includes the compiled-in defaults, the config
# files and the arguments).
SERVER_HELP=
server_config() {
	awk -v name="$1" '$1 == name && /^[^ \t]/ { sub(/^[^ \t]+[ \t]+/, ""); print; exit }' <<<"$SERVER_HELP"
}

read_server_config() { # mariadbd args...
	# doubles as the configuration check: a bad option fails here, before
	# anything is initialised
	if ! SERVER_HELP=$("$@" --verbose --help 2>&1); then
		# the help text comes too; show the server's errors, else its last words
		local errors
		errors=$(grep -F '[ERROR]' <<<"$SERVER_HELP" || tail -n 5 <<<"$SERVER_HELP")
		die "$1 failed while checking its configuration (command: $* --verbose --help):
$errors"
	fi
	DATADIR=$(server_config datadir)
	SOCKET=$(server_config socket)
	DATADIR=${DATADIR%/}
	[[ -n $DATADIR && -n $SOCKET ]] || die "could not read datadir/socket from $1 --verbose --help"
}

setup_env() {
	maria_env MYSQL_ROOT_PASSWORD MARIADB_ROOT_PASSWORD
	maria_env MYSQL_ROOT_HOST MARIADB_ROOT_HOST '%'
	maria_env MYSQL_DATABASE MARIADB_DATABASE
	maria_env MYSQL_USER MARIADB_USER
	maria_env MYSQL_PASSWORD MARIADB_PASSWORD
	maria_env MYSQL_ALLOW_EMPTY_PASSWORD MARIADB_ALLOW_EMPTY_ROOT_PASSWORD
	maria_env MYSQL_RANDOM_ROOT_PASSWORD MARIADB_RANDOM_ROOT_PASSWORD
	maria_env MYSQL_INITDB_SKIP_TZINFO MARIADB_INITDB_SKIP_TZINFO
	file_env MARIADB_USER_HOST '%'
	DATABASE_ALREADY_EXISTS=
	if [[ -d $DATADIR/mysql ]]; then
		DATABASE_ALREADY_EXISTS=true
	fi
}

create_db_directories() {
	mkdir -p "$DATADIR"
	local sockdir=${SOCKET%/*}
	if [[ ${SOCKET:0:1} != @ ]]; then # not an abstract socket
		mkdir -p "$sockdir"
	fi
	if [[ $(id -u) == 0 ]]; then
		find "$DATADIR" \! -user mysql -exec chown mysql:mysql '{}' +
		if [[ ${SOCKET:0:1} != @ ]]; then
			find "$sockdir" -maxdepth 0 \! -user mysql -exec chown mysql:mysql '{}' +
		fi
	fi
}

verify_minimum_env() {
	local v
	for v in MARIADB_ROOT_PASSWORD_HASH MARIADB_PASSWORD_HASH MARIADB_REPLICATION_USER MARIADB_MASTER_HOST; do
		if [[ -n ${!v:-} || -n $(printenv "${v}_FILE" || :) ]]; then
			die "$v is not supported by this image (drill's MariaDB sandbox)"
		fi
	done
	if [[ -z $MARIADB_ROOT_PASSWORD && -z $MARIADB_ALLOW_EMPTY_ROOT_PASSWORD && -z $MARIADB_RANDOM_ROOT_PASSWORD ]]; then
		cat >&2 <<-'EOE'
			docker-entrypoint.sh: error: Database is uninitialized and password option is not specified
			       You need to specify one of MARIADB_ROOT_PASSWORD, MARIADB_ALLOW_EMPTY_ROOT_PASSWORD
			       and MARIADB_RANDOM_ROOT_PASSWORD (or their MYSQL_ equivalents).
		EOE
		exit 1
	fi
	if [[ $MARIADB_USER == root ]]; then
		die "MARIADB_USER=root is not allowed: the root account is set up by MARIADB_ROOT_PASSWORD"
	fi
	if [[ -n $MARIADB_USER && -z $MARIADB_PASSWORD ]]; then
		log "warning: MARIADB_USER is set without MARIADB_PASSWORD; the user is not created"
	elif [[ -z $MARIADB_USER && -n $MARIADB_PASSWORD ]]; then
		log "warning: MARIADB_PASSWORD is set without MARIADB_USER; no user is created"
	fi
}

init_database_dir() { # mariadbd args...
	log "initializing the data directory $DATADIR"
	# mariadbd options given to the container matter for the files created
	# (e.g. --innodb-page-size), so they go to mariadb-install-db too, which
	# passes on what it does not know itself; it word-splits them, hence the
	# ones with white space are left out.
	local -a args=()
	local arg
	for arg in "${@:2}"; do
		if [[ $arg =~ [[:space:]] ]]; then
			log "warning: not passing '$arg' to mariadb-install-db (white space)"
		else
			args+=("$arg")
		fi
	done
	# "normal": root@localhost authenticates by password (as in the official
	# image), not by unix_socket as Debian's default would have it.
	mariadb-install-db --datadir="$DATADIR" --rpm \
		--auth-root-authentication-method=normal \
		"${args[@]}" \
		--cross-bootstrap --skip-test-db --skip-name-resolve \
		--default-time-zone=SYSTEM --enforce-storage-engine= \
		--skip-log-bin --expire-logs-days=0 \
		--loose-innodb_buffer_pool_load_at_startup=0 \
		--loose-innodb_buffer_pool_dump_at_shutdown=0 \
		>/dev/null
	log "data directory initialized"
}

# sql_string S: S escaped for a '...' literal (NO_BACKSLASH_ESCAPES is off
# in the sessions below)
sql_string() {
	local s=${1//\\/\\\\}
	s=${s//$'\n'/\\n}
	printf '%s' "${s//\'/\\\'}"
}
# sql_ident S: S escaped for a `...` identifier
sql_ident() {
	printf '%s' "${1//\`/\`\`}"
}

# process_sql [--no-root-password] [client args]: SQL on stdin, as root, over
# the socket. The password reaches the client through its environment,
# never argv.
process_sql() {
	local pw=${MARIADB_ROOT_PASSWORD:-}
	if [[ ${1:-} == --no-root-password ]]; then
		pw=
		shift
	fi
	MYSQL_PWD=$pw mariadb --protocol=socket --socket="$SOCKET" -uroot -hlocalhost "$@"
}

TEMP_PID=
temp_server_start() { # mariadbd args...
	# unix socket only: no TCP client can connect before the final server runs
	"$@" --skip-networking --socket="$SOCKET" --default-time-zone=SYSTEM \
		--loose-wsrep-on=OFF --expire-logs-days=0 --skip-slave-start \
		--loose-innodb_buffer_pool_load_at_startup=0 &
	TEMP_PID=$!
	log "waiting for the temporary server (pid $TEMP_PID, socket $SOCKET)"
	local i
	for ((i = 0; i < 300; i++)); do
		if process_sql --no-root-password --database=mysql <<<'SELECT 1' >/dev/null 2>&1; then
			return 0
		fi
		if ! kill -0 "$TEMP_PID" 2>/dev/null; then
			wait "$TEMP_PID" || :
			die "the temporary server exited during start-up"
		fi
		sleep 0.1
	done
	die "the temporary server did not accept connections within 30s"
}

temp_server_stop() {
	# SIGTERM: normal shutdown; wait returns once the server has exited
	kill "$TEMP_PID"
	wait "$TEMP_PID" || die "the temporary server failed to shut down cleanly (exit $?)"
	TEMP_PID=
}

setup_db() {
	if [[ -z $MARIADB_INITDB_SKIP_TZINFO ]]; then
		if [[ -d /usr/share/zoneinfo ]]; then
			# --skip-write-binlog: nothing of the set-up goes to a binary log
			mariadb-tzinfo-to-sql --skip-write-binlog /usr/share/zoneinfo 2>/dev/null \
				| process_sql --no-root-password --database=mysql
		else
			log "note: /usr/share/zoneinfo is missing; time zone tables not loaded"
		fi
	fi

	if [[ -n $MARIADB_RANDOM_ROOT_PASSWORD ]]; then
		# (head reads a file: no SIGPIPE for pipefail to trip over)
		MARIADB_ROOT_PASSWORD=$(head -c 24 /dev/urandom | base64)
		export MARIADB_ROOT_PASSWORD MYSQL_ROOT_PASSWORD=$MARIADB_ROOT_PASSWORD
		printf 'GENERATED ROOT PASSWORD: %s\n' "$MARIADB_ROOT_PASSWORD"
	fi

	local rootpw root_host sql
	rootpw=$(sql_string "$MARIADB_ROOT_PASSWORD")
	root_host=$(sql_string "$MARIADB_ROOT_HOST")
	# The accounts are not replicated (sql_log_bin=0); the backslash escapes
	# of the literals need NO_BACKSLASH_ESCAPES off.
	sql="SET @drill_log_bin = @@SESSION.sql_log_bin;
SET SESSION sql_log_bin = 0;
SET SESSION sql_mode = REPLACE(@@SESSION.sql_mode, 'NO_BACKSLASH_ESCAPES', '');
DROP USER IF EXISTS 'root'@'127.0.0.1', 'root'@'::1';
EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS \\'root\\'@\\'', @@hostname, '\\'');
SET PASSWORD FOR 'root'@'localhost' = PASSWORD('$rootpw');
"
	if [[ -n $MARIADB_ROOT_HOST && $MARIADB_ROOT_HOST != localhost ]]; then
		sql+="CREATE USER 'root'@'$root_host' IDENTIFIED BY '$rootpw';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'$root_host' WITH GRANT OPTION;
GRANT PROXY ON ''@'%' TO 'root'@'$root_host' WITH GRANT OPTION;
"
	fi
	sql+="SET SESSION sql_log_bin = @drill_log_bin;
"
	if [[ -n $MARIADB_DATABASE ]]; then
		log "creating database $MARIADB_DATABASE"
		sql+="CREATE DATABASE IF NOT EXISTS \`$(sql_ident "$MARIADB_DATABASE")\`;
"
	fi
	if [[ -n $MARIADB_USER && -n $MARIADB_PASSWORD ]]; then
		local user host
		user=$(sql_string "$MARIADB_USER")
		host=$(sql_string "$MARIADB_USER_HOST")
		log "creating user $MARIADB_USER@$MARIADB_USER_HOST"
		sql+="CREATE USER '$user'@'$host' IDENTIFIED BY '$(sql_string "$MARIADB_PASSWORD")';
"
		if [[ -n $MARIADB_DATABASE ]]; then
			# in GRANT, _ and % in a database name are wildcards
			local grant_db
			grant_db=$(sql_ident "$MARIADB_DATABASE")
			grant_db=${grant_db//_/\\_}
			grant_db=${grant_db//%/\\%}
			log "granting $MARIADB_USER all privileges on $MARIADB_DATABASE"
			sql+="GRANT ALL PRIVILEGES ON \`$grant_db\`.* TO '$user'@'$host';
"
		fi
	fi
	# the password was set by the statements above: this connection still
	# logs in without one
	process_sql --no-root-password --database=mysql --binary-mode <<<"$sql"
}

main() {
	# "docker run IMAGE --opt" => "mariadbd --opt"
	if [[ $# -eq 0 || ${1:0:1} == - ]]; then
		set -- mariadbd "$@"
	fi

	if [[ $1 == mariadbd || $1 == mysqld ]] && ! want_help "$@"; then
		if [[ $(id -u) != 0 && -n ${_DRILL_ENTRYPOINT_DATADIR:-} && -n ${_DRILL_ENTRYPOINT_SOCKET:-} ]]; then
			# the re-run as mysql below: root read (and checked) the
			# configuration of these same arguments already
			DATADIR=$_DRILL_ENTRYPOINT_DATADIR SOCKET=$_DRILL_ENTRYPOINT_SOCKET
		else
			read_server_config "$@"
		fi
		unset _DRILL_ENTRYPOINT_DATADIR _DRILL_ENTRYPOINT_SOCKET
		# before dropping root: *_FILE secrets may be readable by root only
		# (the values then reach the re-run through the environment)
		setup_env
		create_db_directories
		if [[ $(id -u) == 0 ]]; then
			# drop root: re-run this script as mysql (no gosu; util-linux setpriv)
			log "MariaDB ${MARIADB_VERSION:-} entrypoint: switching to user mysql"
			export HOME=/var/lib/mysql _DRILL_ENTRYPOINT_DATADIR=$DATADIR _DRILL_ENTRYPOINT_SOCKET=$SOCKET
			exec setpriv --reuid=mysql --regid=mysql --init-groups -- "${BASH_SOURCE[0]}" "$@"
		fi

		if [[ -z $DATABASE_ALREADY_EXISTS ]]; then
			verify_minimum_env
			if [[ -n $(ls -A /docker-entrypoint-initdb.d/ 2>/dev/null) ]]; then
				log "warning: /docker-entrypoint-initdb.d is not supported by this image; ignoring it"
			fi
			init_database_dir "$@"
			temp_server_start "$@"
			setup_db
			temp_server_stop
			printf '\nMariaDB init process done. Ready for start up.\n\n'
		else
			printf '\nMariaDB data directory %s already contains a database; skipping initialization\n\n' "$DATADIR"
		fi
		# the server does not need the passwords in its environment
		local v
		for v in ROOT_PASSWORD PASSWORD; do
			unset "MARIADB_$v" "MYSQL_$v" "MARIADB_${v}_FILE" "MYSQL_${v}_FILE"
		done
	fi

	exec "$@"
}

main "$@"
