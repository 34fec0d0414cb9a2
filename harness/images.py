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
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from harness.resources import package_path

Progress = Callable[[str], Any]

#: what the images are called; the docker backend runs these
OPENSIPS_IMAGE = "opensips-bin-harness/opensips:1.10.5"
SIPP_IMAGE = "opensips-bin-harness/sipp:latest"
DEFAULT_BASE = "debian:bookworm-slim"
DEFAULT_MIRROR = "http://deb.debian.org/debian"

#: label put on everything this module builds, so images can be recognised
IMAGE_LABEL = "org.opensips-bin-harness.image"

CONTAINERS_DIR = package_path("containers")

# Build outputs that OpenSIPS's own .gitignore excludes anyway: not worth copying into
# the build context (the Dockerfile's verification ignores and then deletes them).
_SOURCE_JUNK = ("*.o", "*.d", "*.so", ".git", "*.swp")
# The classic builder colours a step's stderr; progress lines are plain text.
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class ImageError(RuntimeError):
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
    for needed in ("Makefile", "bin_interface.c", "modules/dialog"):
        if not (path / needed).exists():
            return f"{path} does not look like an OpenSIPS source tree (no {needed})"
    return None


def stage_context(name: str, source_dir: Path | None, dest: Path) -> Path:
    """Copy ``containers/<name>`` (plus an optional OpenSIPS tree) into ``dest``.

    The build context always has an ``opensips-src/`` directory: empty means "download
    the pinned release", non-empty means "use this tree" (still verified against the
    pinned git tree id inside the build).
    """
    src = CONTAINERS_DIR / name
    if not (src / "Dockerfile").is_file():
        raise ImageError(f"no Dockerfile in {src}")
    ctx = dest / name
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
) -> dict[str, str]:
    """Build the OpenSIPS 1.10.5 and SIPp images; returns {image name: image id}.

    ``source_dir`` replaces the download of the pinned upstream release (air-gapped
    machines); ``base`` replaces the Debian bookworm slim base image.
    """
    src = Path(source_dir).expanduser().resolve() if source_dir is not None else None
    if src is not None and (why := looks_like_opensips_source(src)):
        raise ImageError(why)
    client = _client()
    try:
        return _build_images(client, src, base or DEFAULT_BASE, progress, which, no_cache)
    finally:
        client.close()


def _build_images(client: Any, src: Path | None, base: str, progress: Progress,
                  which: Sequence[str], no_cache: bool) -> dict[str, str]:
    """build_images' work, with a client its caller closes."""
    try:
        client.images.get(base)
    except Exception:
        progress(f"base image {base} not present locally; the engine will try to pull it")
    plan = {"opensips": ("opensips", OPENSIPS_IMAGE), "sipp": ("sipp", SIPP_IMAGE)}
    unknown = [w for w in which if w not in plan]
    if unknown:
        raise ImageError(f"unknown image {unknown[0]!r}: choose from {', '.join(plan)}")
    built: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="harness-build-") as tmp:
        for what in which:
            directory, tag = plan[what]
            args = {"BASE_IMAGE": base}
            how = "upstream release download"
            if what == "opensips":
                if src is not None:
                    how = f"local source {src}"
                progress(f"== building {tag} on {base} from {how}")
                ctx = stage_context(directory, src, Path(tmp))
            else:
                progress(f"== building {tag} on {base}")
                ctx = stage_context(directory, None, Path(tmp))
            built[tag] = _docker_build(client, ctx, tag, args, progress, no_cache=no_cache)
            progress(f"== {tag} built ({built[tag][7:19]})")
    return built
