#!/bin/sh
# Entrypoint of the Prometheus container: renders /etc/prometheus/prometheus.yml with the
# targets from $COLLECTOR_TARGET and $RECEIVER_TARGET (comma-separated host:port lists; spaces
# around commas are ignored), then runs Prometheus on the rendered copy. Unset or empty
# variables keep the defaults written in prometheus.yml. POSIX sh (the image has busybox).
#
#   COLLECTOR_TARGET="node-a:9464, node-b:9464" RECEIVER_TARGET=receiver:8080
#
# RENDER_ONLY=1 prints the rendered config instead of starting Prometheus (validate.sh uses it).
set -eu

src="${PROMETHEUS_CONFIG_TEMPLATE:-/etc/prometheus/prometheus.yml}"
out="${PROMETHEUS_RENDERED_CONFIG:-/prometheus/prometheus.rendered.yml}"

# "a:1, b:2" -> "a:1","b:2" (no sed special characters can reach the replacement: host:port
# lists are checked first).
quote_list() {
    list=$(printf '%s' "$1" | tr -d ' \t')
    case "$list" in
        *[!A-Za-z0-9.:,_\[\]-]*)
            echo "prometheus-entrypoint: bad target list: $1" >&2
            exit 2
            ;;
    esac
    printf '%s' "$list" | sed 's/,,*/,/g; s/^,//; s/,$//; s/[^,][^,]*/"&"/g'
}

script=""
if [ -n "${COLLECTOR_TARGET:-}" ]; then
    script="$script s|\\[\"host.docker.internal:9464\"\\]|[$(quote_list "$COLLECTOR_TARGET")]|;"
fi
if [ -n "${RECEIVER_TARGET:-}" ]; then
    script="$script s|\\[\"host.docker.internal:8080\"\\]|[$(quote_list "$RECEIVER_TARGET")]|;"
fi

if [ "${RENDER_ONLY:-0}" = 1 ]; then
    sed "$script" "$src"
    exit 0
fi

sed "$script" "$src" >"$out"
echo "prometheus-entrypoint: collectors=${COLLECTOR_TARGET:-default} receiver=${RECEIVER_TARGET:-default}" >&2
exec /bin/prometheus \
    --config.file="$out" \
    --storage.tsdb.path=/prometheus \
    --storage.tsdb.retention.time="${PROMETHEUS_RETENTION:-7d}" \
    --web.enable-lifecycle \
    "$@"
