"""Installs ``featurebus_torchvision.pth`` beside the package: every interpreter of the environment
then prepares ``import torchvision`` over the CPU torch (see featurebus/torchvision_compat.py)."""

from __future__ import annotations

from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PTH = "featurebus_torchvision.pth"


class TorchvisionHook(BuildHookInterface):  # type: ignore[misc]
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        build_data["force_include_editable" if version == "editable" else "force_include"][PTH] = PTH
