"""``mixpeek://name@version/feature`` (or ``featurebus://``) → its parts."""

from __future__ import annotations

import re
from dataclasses import dataclass

from featurebus.common import ids
from featurebus.common.ids import normalize_version

__all__ = ["FeatureUri", "parse_feature_uri"]

_URI = re.compile(r"^(mixpeek|featurebus)://([a-z][a-z0-9_]*)@([^/]+)/([A-Za-z0-9_.\-]+)$")


@dataclass(frozen=True)
class FeatureUri:
    name: str
    version: str
    feature: str

    @property
    def plugin_id(self) -> str:
        return ids.plugin_id(self.name, self.version)


def parse_feature_uri(uri: str) -> FeatureUri:
    match = _URI.match(uri.strip())
    if not match:
        raise ValueError(f"feature_uri {uri!r} is not of the form mixpeek://<plugin_name>@<version>/<feature_name>")
    _, name, version, feature = match.groups()
    return FeatureUri(name, normalize_version(version), feature)
