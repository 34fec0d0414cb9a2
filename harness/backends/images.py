"""Build the harness's Docker images and, where no registry is reachable, their base.

Image builds take minutes, so every step streams its output through ``progress``;
failures surface as one :class:`ImageError` line (what broke and what to do), which
``main`` prints without a traceback. The build talks to the engine through the Docker
SDK (the classic builder), so no ``docker`` CLI or buildx plugin is needed.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.base.errors import HarnessError
from harness.base.releases import (
    BASELINE,
    ReleaseError,
    expand_versions,
    pin,
    version_key,
)
from harness.base.resources import shipped

Progress = Callable[[str], Any]

#: where OpenSIPS images live; the tag is the release (or an unverified build's name)
OPENSIPS_REPO = "opensips-bin-harness/opensips"
#: what the images are called; the docker backend runs these by default
OPENSIPS_IMAGE = f"{OPENSIPS_REPO}:{BASELINE}"
SIPP_IMAGE = "opensips-bin-harness/instruments/sipp:latest"
DEFAULT_BASE = "debian:bookworm-slim"
DEFAULT_MIRROR = "http://deb.debian.org/debian"

#: label put on everything this module builds, so images can be recognised
IMAGE_LABEL = "org.opensips-bin-harness.image"
#: labels of an OpenSIPS image (set by the Dockerfile from its build arguments): the
#: release it was built as, and "true" only when its source matched that release's pin
VERSION_LABEL = "org.opensips-bin-harness.opensips-version"
VERIFIED_LABEL = "org.opensips-bin-harness.verified"
#: upstream's tag tarball of a release (its git-archive commit id is checked)
UPSTREAM_URL = "https://github.com/OpenSIPS/opensips/archive/refs/tags/{version}.tar.gz"
#: the recipe under containers/ that builds every 1.10.x and 1.11.x release
OPENSIPS_RECIPE = "opensips"

CONTAINERS_DIR = shipped("containers")

# Build outputs that OpenSIPS's own .gitignore excludes anyway: not worth copying into
# the build context (the Dockerfile's verification ignores and then deletes them).
_SOURCE_JUNK = ("*.o", "*.d", "*.so", ".git", "*.swp")
# The classic builder colours a step's stderr; progress lines are plain text.
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class ImageError(HarnessError, RuntimeError):
    """A build step failed; the message is one line a user can act on."""


def engine_socket_problem() -> str | None:
    """Why the local engine socket cannot be reached, or None (also for non-unix hosts).

    Checked with a plain socket first because the Docker SDK leaks its socket when the
    connect fails, which pytest (warnings as errors) reports as a ResourceWarning.
    """
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return None
    path = host[len("unix://"):]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        try:
            sock.connect(path)
        except OSError as exc:
            return f"{path}: {exc.strerror or exc}"
    return None


def engine_socket_reason(problem: str) -> str:
    """One line for an engine socket that would not connect, naming what to do.

    A permission problem (socket there, user not in the docker group) and an engine
    that is not running (refused, or no socket at all) need different fixes.
    """
    if "permission denied" in problem.lower():
        return (f"docker engine socket not permitted ({problem}): "
                "add this user to the docker group or set DOCKER_HOST")
    return f"docker engine not reachable ({problem}): start dockerd or set DOCKER_HOST"


def _client() -> Any:
    """A Docker SDK client that answered ping, else a one-line ImageError."""
    try:
        import docker  # imported late: `harness --help` must not need it
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImageError("python package 'docker' missing: pip install docker") from exc
    if problem := engine_socket_problem():
        raise ImageError(engine_socket_reason(problem))
    client = None
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except Exception as exc:
        if client is not None:
            client.close()
        raise ImageError(engine_socket_reason(first_line(exc))) from exc
    return client


def first_line(exc: BaseException) -> str:
    """First line of an exception, for one-line error messages."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def image_exists(name: str) -> bool:
    """True when the local engine has ``name`` (no pull attempted)."""
    import docker

    client = _client()
    try:
        client.images.get(name)
        return True
    except docker.errors.ImageNotFound:
        return False
    finally:
        client.close()


# --------------------------------------------------------------------------- base image


def host_mirror(sources: Iterable[Path] | None = None) -> str:
    """The Debian mirror this host's apt uses (main archive, not security).

    Reusing it makes debootstrap work wherever the host's own apt works.
    """
    if sources is None:
        sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for url in _mirror_urls(text):
            if "security" not in url and "/debian" in url:
                return url.rstrip("/")
    return DEFAULT_MIRROR


def _mirror_urls(text: str) -> list[str]:
    """URLs of one-line (``deb URL suite``) and deb822 (``URIs:``) apt sources."""
    urls: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if m := re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", line):
            urls.append(m.group(1))
        elif m := re.match(r"^URIs:\s*(.+)$", line, re.IGNORECASE):
            urls.extend(m.group(1).split())
    return urls


def _stream(cmd: Sequence[str], progress: Progress, what: str) -> None:
    """Run ``cmd`` printing each output line; ImageError with the tail on failure."""
    tail: list[str] = []
    try:
        proc = subprocess.Popen(
            list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
    except OSError as exc:
        raise ImageError(f"{what}: cannot run {cmd[0]}: {first_line(exc)}") from exc
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        if line:
            progress(line)
            tail = (tail + [line])[-1:]
    if proc.wait() != 0:
        last = f": {tail[-1]}" if tail else ""
        raise ImageError(f"{what} failed (exit {proc.returncode}){last}")


def make_base_image(
    name: str = DEFAULT_BASE,
    mirror: str | None = None,
    progress: Progress = print,
    *,
    suite: str = "bookworm",
) -> str:
    """debootstrap a minbase Debian into a temp dir and ``docker import`` it as ``name``.

    For machines that reach a Debian mirror but no image registry. Needs root and
    debootstrap. Returns the image id.
    """
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap not found: apt-get install debootstrap")
    if os.geteuid() != 0:
        raise ImageError("making a base image needs root (debootstrap chroots)")
    client = _client()
    try:
        return _make_base_image(client, name, mirror, progress, suite)
    finally:
        client.close()


def _make_base_image(client: Any, name: str, mirror: str | None, progress: Progress, suite: str) -> str:
    """make_base_image's work, with a client its caller closes."""
    mirror = mirror or host_mirror()
    repo, _, tag = name.rpartition(":") if ":" in name.split("/")[-1] else (name, "", "latest")
    work = Path(tempfile.mkdtemp(prefix="harness-base-"))
    root = work / "rootfs"
    try:
        progress(f"debootstrap --variant=minbase {suite} from {mirror} (a few minutes)")
        _stream(
            ["debootstrap", "--variant=minbase", suite, str(root), mirror],
            progress,
            "debootstrap",
        )
        _slim_rootfs(root)
        tarball = work / "rootfs.tar"
        progress(f"packing {root} ...")
        _stream(["tar", "-C", str(root), "--numeric-owner", "-cf", str(tarball), "."], progress, "tar")
        progress(f"importing as {repo}:{tag} ...")
        try:
            client.api.import_image_from_file(
                str(tarball), repository=repo, tag=tag, changes=['CMD ["bash"]']
            )
            image = client.images.get(f"{repo}:{tag}")
        except Exception as exc:
            raise ImageError(f"docker import failed: {first_line(exc)}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    progress(f"base image {repo}:{tag} ready ({image.short_id})")
    return str(image.id)


def _slim_rootfs(root: Path) -> None:
    """Drop caches debootstrap leaves behind, as Debian's slim images do."""
    for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_Packages", "var/log/*.log"):
        for path in root.glob(pattern):
            path.unlink(missing_ok=True)
    # Same knobs the official slim image sets: no docs or man pages from later installs.
    dpkg_cfg = root / "etc/dpkg/dpkg.cfg.d"
    dpkg_cfg.mkdir(parents=True, exist_ok=True)
    (dpkg_cfg / "docker-slim").write_text(
        "path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n"
        "path-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\n"
        "path-exclude /usr/share/locale/*\n"
    )
    apt_cfg = root / "etc/apt/apt.conf.d"
    apt_cfg.mkdir(parents=True, exist_ok=True)
    (apt_cfg / "docker-clean").write_text(
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb || true"; };\n'
        'Acquire::GzipIndexes "true";\n'
    )


# ---------------------------------------------------------------------------- builds


def looks_like_opensips_source(path: Path) -> str | None:
    """Why ``path`` is not an OpenSIPS source tree, or None when it looks like one."""
    if not path.is_dir():
        return f"{path} is not a directory"
    for needed in ("Makefile", "Makefile.defs", "bin_interface.c", "modules/dialog"):
        if not (path / needed).exists():
            return f"{path} does not look like an OpenSIPS source tree (no {needed})"
    return None


def opensips_image(name: str) -> str:
    """The image a release (or an unverified build's name) is built as."""
    return f"{OPENSIPS_REPO}:{name}"


#: what docker accepts as a tag
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def makefile_defs_version(text: str, where: str = "Makefile.defs") -> str:
    """``VERSION.PATCHLEVEL.SUBLEVEL`` of an OpenSIPS Makefile.defs: the release it is.

    EXTRAVERSION is left out: upstream's own tag 1.10.0 says ``EXTRAVERSION = beta``
    (its binary reports 1.10.0beta), and the pinned tree, not that suffix, decides
    whether a tree is the release."""
    fields: dict[str, str] = {}
    for name in ("VERSION", "PATCHLEVEL", "SUBLEVEL", "EXTRAVERSION"):
        if m := re.search(rf"^{name}[ \t]*:?=[ \t]*([^\s#]*)", text, re.MULTILINE):
            fields[name] = m.group(1)
    for name in ("VERSION", "PATCHLEVEL", "SUBLEVEL"):
        if not fields.get(name, "").isdigit():
            raise ImageError(f"{where} has no numeric {name} line: cannot tell which release "
                             "the tree is (pass --version)")
    return f"{fields['VERSION']}.{fields['PATCHLEVEL']}.{fields['SUBLEVEL']}"


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
        shutil.copytree(source_dir, local, symlinks=True, ignore=shutil.ignore_patterns(*_SOURCE_JUNK))
    else:
        local.mkdir()
    return ctx


def _docker_build(
    client: Any,
    ctx: Path,
    tag: str,
    buildargs: dict[str, str],
    progress: Progress,
    *,
    no_cache: bool = False,
) -> str:
    """One classic-builder build with streamed output; returns the image id."""
    last: list[str] = []
    said: list[str] = []  # the recipe's own "error: ..." line, clearer than docker's
    try:
        stream = client.api.build(
            path=str(ctx),
            tag=tag,
            buildargs=buildargs,
            network_mode="host",
            rm=True,
            forcerm=True,
            pull=False,
            nocache=no_cache,
            labels={IMAGE_LABEL: tag},
            decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                detail = chunk.get("error", "").strip().splitlines()
                msg = detail[-1] if detail else "unknown error"
                if said:
                    msg = said[-1]
                hint = ""
                if "pull access denied" in msg or "not found" in msg and "manifest" in msg:
                    hint = " (base image missing: run `harness image base` or pass --base)"
                raise ImageError(f"building {tag} failed: {msg}{hint}")
            text = _ANSI.sub("", chunk.get("stream", ""))
            for line in text.splitlines():
                line = line.rstrip()
                if line:
                    progress(line)
                    last = (last + [line])[-5:]
                    if line.startswith("error: "):
                        said.append(line[len("error: "):])
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(f"building {tag} failed: {first_line(exc)}") from exc
    try:
        return str(client.images.get(tag).id)
    except Exception as exc:
        tail = f" (last output: {last[-1]})" if last else ""
        raise ImageError(f"building {tag} produced no image{tail}") from exc


def build_images(
    source_dir: str | os.PathLike[str] | None = None,
    base: str | None = None,
    progress: Progress = print,
    *,
    which: Sequence[str] = ("opensips", "sipp"),
    no_cache: bool = False,
    versions: str | Sequence[str] | None = None,
    unverified: bool = False,
    label: str | None = None,
) -> dict[str, str]:
    """Build OpenSIPS images (one per release) and the SIPp image; returns {image name: image id}.

    ``versions`` picks the releases (default the baseline, 1.10.5; see
    :func:`plan_opensips_builds`); ``source_dir`` replaces the download of the pinned
    upstream release (air-gapped machines) and is verified the same way, unless
    ``unverified``; ``base`` replaces the Debian bookworm slim base image.
    """
    unknown = [w for w in which if w not in ("opensips", "sipp")]
    if unknown:
        raise ImageError(f"unknown image {unknown[0]!r}: choose from opensips, sipp")
    src = Path(source_dir).expanduser().resolve() if source_dir is not None else None
    plans = plan_opensips_builds(versions, src, unverified=unverified, label=label) \
        if "opensips" in which else []
    client = _client()
    try:
        return _build_images(client, plans, base or DEFAULT_BASE, progress, which, no_cache)
    finally:
        client.close()


def _build_images(client: Any, plans: Sequence[OpenSIPSBuild], base: str, progress: Progress,
                  which: Sequence[str], no_cache: bool) -> dict[str, str]:
    """build_images' work, with a client its caller closes."""
    try:
        client.images.get(base)
    except Exception:
        progress(f"base image {base} not present locally; the engine will try to pull it")
    built: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="harness-build-") as tmp:
        for what in which:
            if what == "sipp":
                progress(f"== building {SIPP_IMAGE} on {base}")
                ctx = stage_context("sipp", None, Path(tmp))
                built[SIPP_IMAGE] = _docker_build(client, ctx, SIPP_IMAGE, {"BASE_IMAGE": base},
                                                  progress, no_cache=no_cache)
                progress(f"== {SIPP_IMAGE} built ({built[SIPP_IMAGE][7:19]})")
                continue
            for n, plan in enumerate(plans, 1):
                count = f"[{n}/{len(plans)}] " if len(plans) > 1 else ""
                if plan.note:
                    progress(plan.note)
                how = f"local source {plan.source}" if plan.source else "upstream release download"
                check = "verified against the pinned tree" if plan.verified else "UNVERIFIED"
                progress(f"== {count}building {plan.tag} ({plan.version}, {check}) on {base} from {how}")
                ctx = stage_context(OPENSIPS_RECIPE, plan.source, Path(tmp) / f"opensips-{n}")
                if plan.source is not None:
                    check_source(ctx / "opensips-src", plan, progress, original=plan.source)
                try:
                    built[plan.tag] = _docker_build(client, ctx, plan.tag,
                                                    {"BASE_IMAGE": base, **plan.buildargs},
                                                    progress, no_cache=no_cache)
                except ImageError as exc:
                    done = f" (built before it: {', '.join(built)})" if built else ""
                    raise ImageError(f"{exc}{done}") from exc
                finally:
                    shutil.rmtree(ctx.parent, ignore_errors=True)
                progress(f"== {count}{plan.tag} built ({built[plan.tag][7:19]})")
    return built
