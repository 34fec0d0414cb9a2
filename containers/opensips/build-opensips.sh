#!/bin/sh
# build-opensips.sh SRC STAGING: build OpenSIPS and install it under STAGING/usr/local
# (the paths a user's `make install` gives: /usr/local/sbin/opensips,
# /usr/local/lib64/opensips/modules/, /usr/local/etc/opensips/).
set -eu
src=$1
staging=$2
cd "$src"
jobs=$(nproc 2>/dev/null || echo 2)
set -- CC_EXTRA_OPTS="${CC_EXTRA_OPTS}"
if [ -n "${OPENSIPS_MODULES:-}" ]; then
    mods=""
    for m in $OPENSIPS_MODULES; do mods="$mods modules/$m"; done
    set -- "$@" modules="${mods# }"
fi
echo "building opensips with $jobs jobs: $*"
make -j"$jobs" "$@" all
# `make install` would also build menuconfig (ncurses) and the opensipsctl family; the
# harness needs the binary, the modules and the sample config only.
install -D -m 755 opensips "$staging"/usr/local/sbin/opensips
make "$@" basedir="$staging" prefix=/usr/local install-modules install-cfg
"$staging"/usr/local/sbin/opensips -V
