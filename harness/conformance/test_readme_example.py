"""The live-test example of README.md, verbatim, so the README cannot drift from the API."""

import pytest


@pytest.mark.live
def test_a_call_replicates(opensips_cluster, sip_calls):
    lc = opensips_cluster(("primary", "backup"), peer=True)   # + a pybin peer
    summary = sip_calls(lc.cluster, "basic", calls=3).wait(timeout=60)
    assert len(summary.completed) == 3
    lc.peer.wait_for(lambda got: sum(p.packet.command == 3 for p in got) == 3,
                     timeout=10, what="three 'deleted' packets")
    assert lc.cluster.mi("backup").get_statistics()["delete_recv"] == 3


def test_the_readme_live_start_example_runs(opensips_backend, monkeypatch):
    """README's "From Python, outside pytest" block, run as written (on this session's
    backend): live.start hands back a started cluster, its peer and capture."""
    import re
    from pathlib import Path

    readme = Path(__file__).resolve().parents[2] / "README.md"
    if not readme.is_file():
        pytest.skip("README.md is part of the repository checkout, not of the installed harness")
    block = re.search(r"```python\n(from harness import live\n.*?)```", readme.read_text(), re.S)
    assert block is not None, "README lost its live.start example"
    monkeypatch.setenv("HARNESS_BACKEND", opensips_backend.name)
    code = block.group(1).replace('choose_backend("auto", settings)',
                                  'choose_backend(__import__("os").environ["HARNESS_BACKEND"], settings)')
    scope: dict = {}
    exec(compile(code, str(readme), "exec"), scope)  # noqa: S102 - the README's own code
    lc = scope["lc"]
    assert lc.cluster.nodes and not any(n.is_running() for n in lc.cluster.nodes.values())
    assert lc.capture.path.name == "capture.pcap"
