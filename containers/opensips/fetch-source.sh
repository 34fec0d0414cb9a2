#!/bin/sh
# fetch-source.sh LOCAL DEST: put the OpenSIPS release into DEST.
# LOCAL non-empty: copy that tree (air-gapped build). Else download OPENSIPS_URL and
# check the commit id that GitHub's git-archive tarball carries. Either way the tree
# is verified afterwards by verify-tree.sh.
set -eu
local_dir=$1
dest=$2
mkdir -p "$dest"
if [ -n "$(ls -A "$local_dir" 2>/dev/null)" ]; then
    echo "opensips source: local tree (download skipped)"
    cp -a "$local_dir"/. "$dest"/
else
    echo "opensips source: downloading ${OPENSIPS_URL}"
    curl -fsSL --retry 3 -o /tmp/opensips.tar.gz "$OPENSIPS_URL"
    got=$(gzip -dc /tmp/opensips.tar.gz | git get-tar-commit-id || true)
    if [ "$got" != "$OPENSIPS_COMMIT" ]; then
        echo "error: ${OPENSIPS_URL} is commit '${got}', pinned ${OPENSIPS_COMMIT}" >&2
        exit 1
    fi
    tar -xzf /tmp/opensips.tar.gz -C "$dest" --strip-components=1
    rm -f /tmp/opensips.tar.gz
fi
