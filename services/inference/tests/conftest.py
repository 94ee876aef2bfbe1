"""Ray Serve's ``disallow_ray_init`` idea: a unit test of inference that starts Ray fails."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def disallow_ray_init(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if request.node.get_closest_marker("integration"):
        yield
        return
    import ray

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a unit test called ray.init: mark it `integration` or use the in-process twins")

    monkeypatch.setattr(ray, "init", refuse)
    yield
