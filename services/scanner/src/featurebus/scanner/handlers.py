"""The scanner's Kafka subscriber."""

from __future__ import annotations

import logging

from featurebus.common import ids
from featurebus.common.events import PluginManifest, PluginScanned, PluginUploaded, Violation
from featurebus.common.kafka import Bus
from featurebus.common.objectstore import ChecksumMismatch, ObjectStore
from featurebus.common.telemetry import span_for
from featurebus.scan.dependencies import PluginPackages
from featurebus.scan.scan import scan_archive

__all__ = ["GROUP", "register", "verdict"]

GROUP = "scanner"
log = logging.getLogger("featurebus.scanner")


async def verdict(event: PluginUploaded, store: ObjectStore, packages: PluginPackages | None = None) -> PluginScanned:
    """Fetch the archive (checksum-checked) and judge it; ``packages``: the installable packages."""

    def scanned(passed: bool, violations: list[Violation], manifest: PluginManifest | None = None) -> PluginScanned:
        return PluginScanned(
            event_id=ids.deterministic_id("evt", event.event_id, "scanned"),
            org_id=event.org_id,
            namespace_id=event.namespace_id,
            plugin_id=event.plugin_id,
            archive_sha256=event.archive_sha256,
            passed=passed,
            violations=violations,
            manifest=manifest,
        )

    try:
        data = await store.get_bytes(event.archive_uri, event.archive_sha256)
    except ChecksumMismatch as exc:
        violation = Violation(
            filename="<archive>", code="ARC100", message=f"archive does not match its checksum: {exc}"
        )
        return scanned(False, [violation])
    report = scan_archive(data, expected_name=event.name, expected_version=event.version, packages=packages)
    log.info("plugin=%s passed=%s violations=%d", event.plugin_id, report.passed, len(report.violations))
    for line in report.lines():
        log.info("plugin=%s %s", event.plugin_id, line)
    return scanned(report.passed, report.violations, report.manifest)


def register(bus: Bus, store: ObjectStore, packages: PluginPackages | None = None) -> None:
    bus.publishes("plugin.scanned")

    @bus.subscriber("plugin.uploaded", group=GROUP)
    async def on_plugin_uploaded(event: PluginUploaded) -> None:
        """Scan an uploaded archive and publish the verdict with every violation."""
        with span_for("scanner.plugin_uploaded", event):
            await bus.publish(await verdict(event, store, packages), key=event.plugin_id)
