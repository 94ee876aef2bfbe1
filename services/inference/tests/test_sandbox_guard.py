"""The sandbox's in-process guard, as plain Python (the kernel side is in test_sandbox.py)."""

from __future__ import annotations

import pytest

from featurebus.inference.sandbox.guard import Guard
from featurebus.sdk.violations import SandboxViolation


def guard(egress: bool) -> Guard:
    return Guard(readable=["/usr"], scratch="/tmp", plugin_dir="/plugins/p", native_roots=["/usr/lib"], egress=egress)


@pytest.mark.parametrize("address", [("127.0.0.1", 27017), ("169.254.169.254", 80), ("10.0.0.5", 443), ("::1", 8000)])
def test_api_plugins_with_egress_still_cannot_reach_loopback_metadata_or_private_networks(address: tuple) -> None:
    g = guard(egress=True)
    with pytest.raises(SandboxViolation, match="refused"):
        g._connect(address)
    assert g.count() == 1


def test_api_plugins_with_egress_reach_public_addresses_and_others_reach_nothing() -> None:
    guard(egress=True)._connect(("8.8.8.8", 443))
    with pytest.raises(SandboxViolation, match="no network access"):
        guard(egress=False)._connect(("8.8.8.8", 443))


def test_writes_outside_scratch_and_reads_outside_the_environment_are_refused() -> None:
    g = guard(egress=False)
    g._open("/tmp/model.bin", "wb", 0)
    g._open("/usr/lib/python3/x.py", "r", 0)
    with pytest.raises(SandboxViolation, match="writing"):
        g._open("/usr/lib/x", "w", 0)
    with pytest.raises(SandboxViolation, match="reading"):
        g._open("/srv/featurebus/admin-api-key", "r", 0)
    assert len(g.since(0)) == 2


def test_the_platforms_data_dir_is_refused_by_name_even_where_it_would_name_scratch() -> None:
    """A data dir under /tmp would name the scratch inside; the plugin is told, not shown an empty dir."""
    g = Guard(
        readable=["/usr", "/tmp", "/tmp/fb/plugins/work/p-1/p", "/tmp/fb/models"],
        scratch="/tmp",
        plugin_dir="/tmp/fb/plugins/work/p-1/p",
        native_roots=["/usr/lib"],
        forbidden=["/tmp/fb"],
    )
    g._open("/tmp/fb/plugins/work/p-1/p/weights.bin", "rb", 0)  # its own files
    g._open("/tmp/fb/models/hub/config.json", "r", 0)  # the model cache
    g._open("/tmp/work.bin", "wb", 0)  # its scratch
    for path, mode in (("/tmp/fb/secrets.key", "r"), ("/tmp/fb", "r"), ("/tmp/fb/planted.csv", "w")):
        with pytest.raises(SandboxViolation, match="platform's data directory"):
            g._open(path, mode, 0)
    assert g.count() == 3
