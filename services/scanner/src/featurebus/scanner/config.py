"""The scanner's settings (env prefix ``FEATUREBUS_``)."""

from pathlib import Path

from featurebus.common.settings import CommonSettings
from featurebus.scan.dependencies import PluginPackages

__all__ = ["ScannerSettings"]


class ScannerSettings(CommonSettings):
    # The packages a plugin's own environment may have (README, "Plugin dependencies"): a TOML
    # file like featurebus.scan's plugin_packages.toml, which is used when this is unset.
    plugin_packages: Path | None = None

    def installable_packages(self) -> PluginPackages:
        """The list, read once at start: a malformed file stops the scanner naming the fix."""
        return PluginPackages.load(self.plugin_packages)
