"""A Debian base image made with debootstrap and ``docker import``: for machines whose
engine reaches no image registry (``harness image base``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from harness.backends.images import (
    DEFAULT_BASE,
    DEFAULT_MIRROR,
    ImageError,
    Progress,
    client,
    first_line,
)


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
    engine = client()
    try:
        return _make_base_image(engine, name, mirror, progress, suite)
    finally:
        engine.close()


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

