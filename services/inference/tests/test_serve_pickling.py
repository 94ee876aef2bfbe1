"""Ray Serve builds deployment configs on several threads of inference at once (a restore, a
deploy, a handle's config update): cloudpickle's by-value registrations must nest for that."""

from __future__ import annotations

import sys
import threading
import types

import pytest
from ray import cloudpickle
from ray.cloudpickle import cloudpickle as pickler
from ray.serve.config import RequestRouterConfig

from featurebus.inference.serve_backend import _count_pickle_by_value


def test_by_value_registrations_nest_until_the_last_user_unregisters(monkeypatch: pytest.MonkeyPatch) -> None:
    _count_pickle_by_value()
    _count_pickle_by_value()  # idempotent
    module = types.ModuleType("fb_nesting_probe")
    monkeypatch.setitem(sys.modules, "fb_nesting_probe", module)  # cloudpickle takes imported modules only
    cloudpickle.register_pickle_by_value(module)
    cloudpickle.register_pickle_by_value(module)
    cloudpickle.unregister_pickle_by_value(module)
    assert "fb_nesting_probe" in pickler._PICKLE_BY_VALUE_MODULES  # the other user still holds it
    cloudpickle.unregister_pickle_by_value(module)
    assert "fb_nesting_probe" not in pickler._PICKLE_BY_VALUE_MODULES


def test_configs_built_on_many_threads_at_once_all_succeed() -> None:
    _count_pickle_by_value()
    errors: list[BaseException] = []

    def build() -> None:
        try:
            for _ in range(100):
                RequestRouterConfig()
        except BaseException as exc:  # what Serve's deploy would have failed with
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
