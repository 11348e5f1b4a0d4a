#!/bin/sh
# Health probe of one crebito instance: GET /health on the address the
# instance listens on (CREBITO_LISTEN: `unix:/path` or `host:port`); exit 0
# when it answers 2xx. Used by the image's HEALTHCHECK (as
# crebito-healthcheck), the compose health checks and scripts/stack.
set -eu
listen="${CREBITO_LISTEN:-0.0.0.0:9999}"
case "$listen" in
    unix:*)
        exec curl -fsS -o /dev/null --max-time 2 \
            --unix-socket "${listen#unix:}" http://localhost/health ;;
    *)
        exec curl -fsS -o /dev/null --max-time 2 \
            "http://127.0.0.1:${listen##*:}/health" ;;
esac
