#!/bin/sh
# verify-tree.sh DIR TREE_ID VERIFIED: check the OpenSIPS source in DIR, then remove
# everything the check did not hash, so the build compiles exactly what was checked.
#
# VERIFIED=true: fail unless DIR's files hash (`git write-tree`) to TREE_ID, the git
# tree of the pinned upstream tag. Two readings of DIR are tried:
#   1. every file: a pristine tree (upstream's tarball, `git archive`, a fresh clone);
#   2. the files git's ignore rules keep (the tree's own .gitignore), so stale *.o or
#      a prebuilt binary in a tree built in place neither break the check nor survive
#      it. 1.11's .gitignore ignores *.html although its tags track two example pages,
#      so ignored *.html files are kept (no OpenSIPS build writes any).
# Either reading must give exactly TREE_ID; whatever it left out is deleted afterwards.
# VERIFIED=false: a patched or private tree, built as it is (reading 2) and labelled
# unverified by the image; its tree id is printed for the record.
#
# A GIT_DIR or GIT_WORK_TREE inherited from the caller would make `git init` below
# re-initialise *that* repository (and mark it bare) instead of making one here.
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_COMMON_DIR
set -eu
dir=$1
want=$2
verified=${3:-true}
case "$verified" in
    true|false) ;;
    *) echo "error: VERIFIED must be true or false, not '$verified'" >&2; exit 2 ;;
esac
cd "$dir"
rm -rf .git
git init -q .
git config core.autocrlf false
git config core.excludesFile /dev/null  # the tree's .gitignore only, not the caller's
git add -A -f
got=$(git write-tree)
if [ "$verified" = false ] || [ "$got" != "$want" ]; then
    git rm -r -q --cached .
    git add -A
    git ls-files -z -o -i --exclude-standard -- '*.html' | xargs -0 -r git add -f --
    got=$(git write-tree)
fi
if [ "$verified" = false ]; then
    echo "opensips source NOT verified (unverified build): git tree $got, $(git ls-files | wc -l) files"
elif [ "$got" != "$want" ]; then
    echo "error: OpenSIPS source tree is $got, pinned $want (not the pinned release?)" >&2
    echo "       $(git ls-files | wc -l) files; compare with: git -C <opensips clone> ls-tree -r $want" >&2
    exit 1
else
    echo "opensips source verified: git tree $got"
fi
git clean -xdfq
rm -rf .git
