"""What request handlers share: settings, the bus, the object store, answers, the secrets cipher."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.fernet import Fernet
from fastapi import Request

from featurebus.common.kafka import Bus
from featurebus.common.objectstore import ObjectStore
from featurebus.registry.answers import Answers
from featurebus.registry.config import RegistrySettings

__all__ = ["Ctx", "ctx"]


@dataclass
class Ctx:
    settings: RegistrySettings
    bus: Bus
    store: ObjectStore
    answers: Answers
    cipher: Fernet


def ctx(request: Request) -> Ctx:
    return request.app.state.ctx  # type: ignore[no-any-return]
