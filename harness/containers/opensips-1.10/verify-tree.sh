#!/bin/sh
# verify-tree.sh DIR TREE_ID: fail unless DIR holds exactly the files of git tree
# TREE_ID (the pinned tag), then remove build leftovers so the build starts clean.
# `git add -A` honours the tree's own .gitignore, so stale *.o or a prebuilt binary in
# a local tree neither break the check nor survive it. Tag 1.10.5 has no
# .gitattributes, so git archive output (the download) is byte-identical to the tag.
# A GIT_DIR or GIT_WORK_TREE inherited from the caller would make `git init` below
# re-initialise *that* repository (and mark it bare) instead of making one here.
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_COMMON_DIR
set -eu
dir=$1
want=$2
cd "$dir"
rm -rf .git
git init -q .
git add -A
got=$(git write-tree)
if [ "$got" != "$want" ]; then
    echo "error: OpenSIPS source tree is $got, pinned $want (not the pinned release?)" >&2
    echo "       $(git ls-files | wc -l) files; compare with: git -C <opensips clone> ls-tree -r $want" >&2
    exit 1
fi
echo "opensips source verified: git tree $got"
git clean -xdfq
rm -rf .git
