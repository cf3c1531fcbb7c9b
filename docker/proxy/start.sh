#!/bin/sh
# The compose stack's authenticating reverse proxy (the `proxy` service; docs/deploy.md,
# "Authentication"): writes nginx's configuration and the Dagster UI's htpasswd file from the
# arguments and the environment, then replaces itself with nginx in the foreground.
#
#   sh docker/proxy/start.sh --host 0.0.0.0 --dagster-port 3000 --dagster-upstream webserver:3000 \
#                            --mlflow-port 5000 --mlflow-upstream mlflow:5000 \
#                            [--review-port 3100 --review-upstream review:3100]
#
# With --review-port, the review page (pynomaly_review) is served there behind the same basic auth
# and users as the Dagster UI; without it, the proxy serves the two UIs only.
#
# Environment (secrets only here, never in arguments: `ps` shows those):
#   DAGSTER_UI_PASSWORD   password of the Dagster UI user (required)
#   DAGSTER_UI_USERNAME   its name (default: admin)
#   DAGSTER_UI_HTPASSWD   optional htpasswd file with more UI users, appended (e.g. `htpasswd -nB alice`)
#   PROXY_TLS_CERT, PROXY_TLS_KEY
#                         PEM certificate (chain) and key: both set, both ports speak HTTPS only
#   PROXY_RUN_DIR         where the generated files go (default: a new private directory under /tmp)
#   PROXY_RESOLVER        DNS server for upstream names (default: the first nameserver of
#                         /etc/resolv.conf, compose's 127.0.0.11 in a container; unused for IP upstreams)
# Run as root (as the test may), nginx's workers run as PROXY_WORKER_USER (default: www-data).
set -eu

die() {
    echo "docker/proxy/start.sh: $*" >&2
    exit 2
}

host=0.0.0.0
dagster_port=
dagster_upstream=
mlflow_port=
mlflow_upstream=
review_port=
review_upstream=
while [ "$#" -gt 0 ]; do
    [ "$#" -ge 2 ] || die "option $1 needs a value"
    case "$1" in
        --host) host=$2 ;;
        --dagster-port) dagster_port=$2 ;;
        --dagster-upstream) dagster_upstream=$2 ;;
        --mlflow-port) mlflow_port=$2 ;;
        --mlflow-upstream) mlflow_upstream=$2 ;;
        --review-port) review_port=$2 ;;
        --review-upstream) review_upstream=$2 ;;
        *) die "unknown option $1" ;;
    esac
    shift 2
done

# every value lands in nginx's configuration: only the characters each one needs get through
check() {  # name value glob-of-a-bad-character
    case "$2" in
        "" | *$3*) die "$1 is empty or malformed: ${2:-<empty>}" ;;
    esac
}
check --host "$host" '[!0-9A-Za-z.:_-]'
check --dagster-port "$dagster_port" '[!0-9]'
check --mlflow-port "$mlflow_port" '[!0-9]'
check --dagster-upstream "$dagster_upstream" '[!0-9A-Za-z.:_-]'
check --mlflow-upstream "$mlflow_upstream" '[!0-9A-Za-z.:_-]'
[ "$dagster_port" != "$mlflow_port" ] || die "--dagster-port and --mlflow-port are both $dagster_port"
review_block='/@REVIEW_BEGIN@/,/@REVIEW_END@/d'
if [ -n "$review_port$review_upstream" ]; then
    check --review-port "$review_port" '[!0-9]'
    check --review-upstream "$review_upstream" '[!0-9A-Za-z.:_-]'
    case "$review_port" in
        "$dagster_port" | "$mlflow_port") die "--review-port $review_port is taken by another UI" ;;
    esac
    review_block='/@REVIEW_BEGIN@/d;/@REVIEW_END@/d'
fi

username=${DAGSTER_UI_USERNAME:-admin}
password=${DAGSTER_UI_PASSWORD:-}
[ -n "$password" ] || die "DAGSTER_UI_PASSWORD is not set: set it in docker/.env (see docker/.env.example)"
check DAGSTER_UI_USERNAME "$username" '[!0-9A-Za-z._@-]'

tls_cert=${PROXY_TLS_CERT:-}
tls_key=${PROXY_TLS_KEY:-}
ssl=
tls=
if [ -n "$tls_cert" ] || [ -n "$tls_key" ]; then
    [ -n "$tls_cert" ] && [ -n "$tls_key" ] || die "set both PROXY_TLS_CERT and PROXY_TLS_KEY, or neither"
    check PROXY_TLS_CERT "$tls_cert" '[!0-9A-Za-z./_-]'
    check PROXY_TLS_KEY "$tls_key" '[!0-9A-Za-z./_-]'
    [ -r "$tls_cert" ] || die "PROXY_TLS_CERT=$tls_cert is not a readable file"
    [ -r "$tls_key" ] || die "PROXY_TLS_KEY=$tls_key is not a readable file"
    ssl=" ssl"
    tls="ssl_certificate $tls_cert; ssl_certificate_key $tls_key; ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:tls:10m; add_header Strict-Transport-Security \"max-age=31536000\" always;"
fi

# upstream names are resolved per request (a recreated container gets a new address)
resolver=
case "$dagster_upstream$mlflow_upstream$review_upstream" in
    *[A-Za-z]*)
        dns=${PROXY_RESOLVER:-$(awk '$1 == "nameserver" { print $2; exit }' /etc/resolv.conf 2>/dev/null || true)}
        check PROXY_RESOLVER "$dns" '[!0-9A-Fa-f.:]'
        case "$dns" in *:*) dns="[$dns]" ;; esac
        resolver="resolver $dns valid=10s;"
        ;;
esac

nginx=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx" ] || die "nginx is not installed (the proxy image has it; locally: bash scripts/proxy.sh)"
command -v openssl >/dev/null 2>&1 || die "openssl is not installed (it hashes DAGSTER_UI_PASSWORD)"

umask 077
run_dir=${PROXY_RUN_DIR:-$(mktemp -d /tmp/pynomaly-proxy.XXXXXX)}
mkdir -p "$run_dir"
check PROXY_RUN_DIR "$run_dir" '[!0-9A-Za-z./_-]'
here=$(cd "$(dirname "$0")" && pwd)

# SHA-512 crypt; the password reaches openssl on stdin (printf is the shell's own: no process shows it)
hash=$(printf '%s\n' "$password" | openssl passwd -6 -stdin) || die "openssl could not hash DAGSTER_UI_PASSWORD"
printf '%s:%s\n' "$username" "$hash" > "$run_dir/dagster_ui.htpasswd"
if [ -n "${DAGSTER_UI_HTPASSWD:-}" ]; then
    [ -r "$DAGSTER_UI_HTPASSWD" ] || die "DAGSTER_UI_HTPASSWD=$DAGSTER_UI_HTPASSWD is not a readable file"
    grep -v '^[[:space:]]*\(#\|$\)' "$DAGSTER_UI_HTPASSWD" >> "$run_dir/dagster_ui.htpasswd" || true
fi

user=
if [ "$(id -u)" = 0 ]; then
    # a root master hands requests to unprivileged workers, which read the htpasswd file per request
    worker=${PROXY_WORKER_USER:-www-data}
    check PROXY_WORKER_USER "$worker" '[!0-9A-Za-z._-]'
    user="user $worker;"
    chown -R "$worker" "$run_dir"
fi

sed -e "$review_block" \
    -e "s|@USER@|$user|" \
    -e "s|@RUN_DIR@|$run_dir|g" \
    -e "s|@HOST@|$host|g" \
    -e "s|@SSL@|$ssl|g" \
    -e "s|@TLS@|$tls|g" \
    -e "s|@RESOLVER@|$resolver|" \
    -e "s|@DAGSTER_PORT@|$dagster_port|g" \
    -e "s|@DAGSTER_UPSTREAM@|$dagster_upstream|g" \
    -e "s|@MLFLOW_PORT@|$mlflow_port|g" \
    -e "s|@MLFLOW_UPSTREAM@|$mlflow_upstream|g" \
    -e "s|@REVIEW_PORT@|$review_port|g" \
    -e "s|@REVIEW_UPSTREAM@|$review_upstream|g" \
    "$here/nginx.conf.template" > "$run_dir/nginx.conf"

scheme=http
[ -z "$ssl" ] || scheme=https
review_note=
[ -z "$review_port" ] || review_note=", review page $scheme://$host:$review_port -> $review_upstream (basic auth)"
echo "proxy: Dagster UI $scheme://$host:$dagster_port -> $dagster_upstream (basic auth, user $username)," \
     "MLflow $scheme://$host:$mlflow_port -> $mlflow_upstream (MLflow's own auth)$review_note"
exec "$nginx" -p "$run_dir" -c "$run_dir/nginx.conf" -e stderr -g 'daemon off;'
