"""An OpenSIPS source tree for an image: which release it is (its Makefile.defs), the
build plan per release (pinned tarball commit and git tree), the check against the pin,
and the staged build context."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.backends.images import (
    CONTAINERS_DIR,
    OPENSIPS_RECIPE,
    SOURCE_JUNK,
    UPSTREAM_URL,
    ImageError,
    Progress,
    opensips_image,
)
from harness.base.releases import (
    BASELINE,
    ReleaseError,
    expand_versions,
    pin,
    version_key,
)


def looks_like_opensips_source(path: Path) -> str | None:
    """Why ``path`` is not an OpenSIPS source tree, or None when it looks like one."""
    if not path.is_dir():
        return f"{path} is not a directory"
    for needed in ("Makefile", "Makefile.defs", "bin_interface.c", "modules/dialog"):
        if not (path / needed).exists():
            return f"{path} does not look like an OpenSIPS source tree (no {needed})"
    return None



#: what docker accepts as a tag
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


#: the three numbers of a release as Makefile.defs names them: 1.x's kernel-style
#: names, and 2.x's (``VERSION_MAJOR = 2``, ``VERSION_MINOR = 1``, ``VERSION_SUBMINOR = 5``)
_VERSION_NAMES = (("VERSION", "PATCHLEVEL", "SUBLEVEL"),
                  ("VERSION_MAJOR", "VERSION_MINOR", "VERSION_SUBMINOR"))


def makefile_defs_version(text: str, where: str = "Makefile.defs") -> str:
    """``VERSION.PATCHLEVEL.SUBLEVEL`` (2.x: ``VERSION_MAJOR.VERSION_MINOR.VERSION_SUBMINOR``)
    of an OpenSIPS Makefile.defs: the release it is.

    EXTRAVERSION (2.x: VERSION_BUILD) is left out: upstream's own tag 1.10.0 says
    ``EXTRAVERSION = beta`` (its binary reports 1.10.0beta), and the pinned tree, not
    that suffix, decides whether a tree is the release."""
    def value(name: str) -> str:
        m = re.search(rf"^{name}[ \t]*:?=[ \t]*([^\s#]*)", text, re.MULTILINE)
        return m.group(1) if m else ""

    for names in _VERSION_NAMES:
        numbers = [value(name) for name in names]
        if any(numbers):
            break
    for name, number in zip(names, numbers):
        if not number.isdigit():
            raise ImageError(f"{where} has no numeric {name} line: cannot tell which release "
                             "the tree is (pass --version)")
    return ".".join(numbers)


def source_version(path: Path) -> str:
    """The release an OpenSIPS source tree says it is (its Makefile.defs)."""
    defs = path / "Makefile.defs"
    try:
        text = defs.read_text(errors="replace")
    except OSError as exc:
        raise ImageError(f"cannot read {defs}: {exc.strerror or exc}") from exc
    return makefile_defs_version(text, str(defs))


@dataclass(frozen=True)
class OpenSIPSBuild:
    """One OpenSIPS image to build: which release, from where, called what, checked or not."""

    #: the release: pinned (verified) or what the tree's Makefile.defs says (unverified)
    version: str
    #: the image name, e.g. opensips-bin-harness/opensips:1.11.11
    tag: str
    #: True: the source must hash to the release's pinned git tree (download or --source)
    verified: bool
    #: a local tree replacing the download, or None
    source: Path | None = None
    #: OPENSIPS_* build arguments of the Dockerfile
    buildargs: dict[str, str] = field(default_factory=dict)
    #: said before the build (e.g. where the version came from)
    note: str | None = None

    @property
    def tree(self) -> str:
        return self.buildargs.get("OPENSIPS_TREE", "")


def _pinned_buildargs(version: str) -> dict[str, str]:
    commit, tree = pin(version)
    return {"OPENSIPS_VERSION": version, "OPENSIPS_COMMIT": commit, "OPENSIPS_TREE": tree,
            "OPENSIPS_URL": UPSTREAM_URL.format(version=version), "OPENSIPS_VERIFIED": "true"}


def plan_opensips_builds(
    versions: str | Sequence[str] | None = None,
    source: Path | None = None,
    *,
    unverified: bool = False,
    label: str | None = None,
) -> list[OpenSIPSBuild]:
    """What ``harness image build`` builds for these options; ImageError (one line) when it can't.

    ``versions``: ``--version`` values (each may be a comma list, ``all``, ``1.10`` or
    ``1.11``); none means the baseline, or with ``source`` the release its Makefile.defs
    names. Offline: nothing here touches the engine or the network.
    """
    if label is not None and not unverified:
        raise ImageError("--label names an unverified build: use it with --source DIR --unverified "
                         "(a verified image is named by its release)")
    if unverified and source is None:
        raise ImageError("--unverified needs --source DIR: a download is always the pinned "
                         "upstream release, verified")
    try:
        wanted = expand_versions(list(versions) if not isinstance(versions, str) else versions) \
            if versions else []
        if source is None:
            return [OpenSIPSBuild(v, opensips_image(v), True, None, _pinned_buildargs(v))
                    for v in (wanted or [BASELINE])]
    except ReleaseError as exc:
        raise ImageError(str(exc)) from None
    if len(wanted) > 1:
        raise ImageError(f"--source DIR is one tree: give it one --version, not {len(wanted)} "
                         f"({', '.join(wanted)})")
    if why := looks_like_opensips_source(source):
        raise ImageError(why)
    says = source_version(source)
    version = wanted[0] if wanted else says
    note = None if wanted else f"no --version given: {source}/Makefile.defs says {says}"
    if unverified:
        name = label if label is not None else f"{version}-unverified"
        if not _TAG.match(name):
            raise ImageError(f"--label {name!r} is not a docker tag (letters, digits, '_', '.', '-'; "
                             "at most 128)")
        try:
            version_key(name)
        except ReleaseError:
            pass
        else:
            raise ImageError(f"--label {name} is a release's name, kept for the verified upstream "
                             f"image: name the unverified build otherwise (default {version}-unverified)")
        args = {"OPENSIPS_VERSION": version, "OPENSIPS_COMMIT": "", "OPENSIPS_TREE": "",
                "OPENSIPS_URL": "", "OPENSIPS_VERIFIED": "false"}
        return [OpenSIPSBuild(version, opensips_image(name), False, source, args, note)]
    if wanted and says != version:
        raise ImageError(f"{source} is {says} by its Makefile.defs, not {version}: pass --version "
                         f"{says}, or --unverified to build the tree as it is")
    try:
        args = _pinned_buildargs(version)
    except ReleaseError as exc:
        raise ImageError(f"{exc}: {source} says it is {version}; pass --unverified to build it "
                         "as it is") from None
    return [OpenSIPSBuild(version, opensips_image(version), True, source, args, note)]


def check_source(tree: Path, build: OpenSIPSBuild, progress: Progress,
                 original: Path | None = None) -> None:
    """Run the recipe's verify-tree.sh on a staged copy of a local tree, before the build.

    The same check runs again inside the build (which is what the image's verified label
    rests on); running it here first refuses a wrong tree in one line, in seconds, and
    ships only the checked files. It deletes what it did not hash, so never run it on
    the user's own tree. Without git or sh here, the build's own check is the only one.
    """
    script = CONTAINERS_DIR / OPENSIPS_RECIPE / "verify-tree.sh"
    if shutil.which("git") is None or shutil.which("sh") is None:
        progress("git not found here: the source tree is checked inside the build only")
        return
    verified = "true" if build.verified else "false"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    done = subprocess.run(["sh", str(script), str(tree), build.tree, verified], capture_output=True,
                          text=True, errors="replace", env=env)
    said = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    if done.returncode != 0:
        first = next((line for line in said if line.startswith("error:")), said[0] if said else "")
        first = re.sub(r"\s*\(not the pinned release\?\)$", "", first.removeprefix("error:").strip())
        raise ImageError(f"{original or tree} is not upstream {build.version} ({first}): refused; "
                         "pass --unverified [--label NAME] to build a patched tree as it is")
    for line in said:
        progress(line)


def stage_context(name: str, source_dir: Path | None, dest: Path) -> Path:
    """Copy ``containers/<name>`` (plus an optional OpenSIPS tree) into ``dest``.

    The build context always has an ``opensips-src/`` directory: empty means "download
    the pinned release", non-empty means "use this tree" (still verified against the
    pinned git tree id inside the build, unless the build is an unverified one).
    """
    src = CONTAINERS_DIR / name
    if not (src / "Dockerfile").is_file():
        raise ImageError(f"no Dockerfile in {src}")
    ctx = dest / name
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, ctx, ignore=shutil.ignore_patterns("opensips-src"))
    local = ctx / "opensips-src"
    if source_dir is not None:
        shutil.copytree(source_dir, local, symlinks=True, ignore=shutil.ignore_patterns(*SOURCE_JUNK))
    else:
        local.mkdir()
    return ctx

