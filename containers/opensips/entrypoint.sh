#!/bin/sh
# Container entry: write the config handed over in OPENSIPS_CFG_B64 (base64), so the
# harness needs no bind mount (works with remote engines), then exec the command so
# OpenSIPS is tini's direct child and gets the signals tini forwards.
set -eu
if [ -n "${OPENSIPS_CFG_B64:-}" ]; then
    mkdir -p /usr/local/etc/opensips
    printf '%s' "$OPENSIPS_CFG_B64" | base64 -d > /usr/local/etc/opensips/opensips.cfg
fi
exec "$@"
