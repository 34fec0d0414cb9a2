"""``harness image build``: the OpenSIPS image of each release asked for, and SIPp's,
built through the Docker SDK with every step streamed."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.backends.images import (
    ANSI,
    DEFAULT_BASE,
    IMAGE_LABEL,
    OPENSIPS_RECIPE,
    SIPP_IMAGE,
    ImageError,
    Progress,
    client,
    first_line,
)
from harness.backends.images.source import (
    OpenSIPSBuild,
    check_source,
    plan_opensips_builds,
    stage_context,
)


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
            text = ANSI.sub("", chunk.get("stream", ""))
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
    engine = client()
    try:
        return _build_images(engine, plans, base or DEFAULT_BASE, progress, which, no_cache)
    finally:
        engine.close()


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
