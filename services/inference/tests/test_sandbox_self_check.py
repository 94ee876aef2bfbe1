"""FEATUREBUS_SANDBOX_SELF_CHECK: the start-up sandbox check runs in the driver (the default) or,
with "workers", in a Ray task on every node that offers CPUs, instead of in the driver. Either
way a node that cannot sandbox stops the service, and the check is never skipped unless the
sandbox itself is turned off."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from featurebus.inference import main
from featurebus.inference.config import InferenceSettings
from featurebus.inference.sandbox import probe as probe_module
from featurebus.inference.sandbox.policy import SandboxUnavailable


def test_the_check_runs_in_the_driver_by_default_and_only_two_places_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    assert InferenceSettings().sandbox_self_check == "driver"
    monkeypatch.setenv("FEATUREBUS_SANDBOX_SELF_CHECK", "workers")
    assert InferenceSettings().sandbox_self_check == "workers"
    monkeypatch.setenv("FEATUREBUS_SANDBOX_SELF_CHECK", "none")
    with pytest.raises(ValidationError, match="driver"):
        InferenceSettings()


def _refusing_probe(calls: list[str]) -> Any:
    def refuse(timeout: float = 60.0) -> None:
        calls.append("probe")
        raise SandboxUnavailable("plugins cannot be sandboxed on this machine: no user namespaces")

    return refuse


def test_driver_mode_refuses_to_start_where_the_driver_cannot_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(probe_module, "probe", _refusing_probe(calls))
    with pytest.raises(SandboxUnavailable, match="no user namespaces"):
        main.check_sandbox(InferenceSettings(sandbox_self_check="driver"))
    assert calls == ["probe"]


def test_workers_mode_does_not_probe_the_driver_nor_skip_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(probe_module, "probe", _refusing_probe(calls))
    main.check_sandbox(InferenceSettings(sandbox_self_check="workers"))  # the driver lacks user namespaces: fine
    assert calls == []

    import ray

    monkeypatch.setattr(ray, "nodes", lambda: [])  # no worker joined
    with pytest.raises(SandboxUnavailable, match="no Ray node with CPUs joined within"):
        main.check_sandbox_on_workers(
            InferenceSettings(sandbox_self_check="workers", sandbox_self_check_timeout_s=0.2), poll_s=0.05
        )


def test_nothing_is_checked_on_the_workers_in_driver_mode_or_with_the_sandbox_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ray

    def unexpected() -> list[Any]:
        raise AssertionError("asked Ray for its nodes")

    monkeypatch.setattr(ray, "nodes", unexpected)
    assert main.check_sandbox_on_workers(InferenceSettings(sandbox_self_check="driver")) == {}
    assert main.check_sandbox_on_workers(InferenceSettings(sandbox="off", sandbox_self_check="workers")) == {}


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    import ray

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    temp = f"/tmp/fb-ray-selfcheck-{os.getpid()}"
    ray.init(num_cpus=1, include_dashboard=False, _temp_dir=temp, log_to_driver=False)
    yield
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.integration
@pytest.mark.slow
def test_workers_mode_probes_each_node_in_a_ray_task_and_fails_closed(ray_local: None) -> None:
    settings = InferenceSettings(sandbox_self_check="workers", sandbox_self_check_timeout_s=120)
    driver = os.getpid()

    def where_it_runs() -> str | None:  # pickled by value: runs in the Ray worker
        return "ran in the driver process" if os.getpid() == driver else None

    checked = main.check_sandbox_on_workers(settings, probe=where_it_runs)
    assert len(checked) == 1 and set(checked.values()) == {None}

    def cannot() -> str | None:
        return "unprivileged user namespaces are needed"

    with pytest.raises(SandboxUnavailable, match=r"Ray node\(s\) .*unprivileged user namespaces are needed"):
        main.check_sandbox_on_workers(settings, probe=cannot)

    # The real probe, in a Ray worker of this machine (which can sandbox: test_sandbox.py needs it too).
    assert set(main.check_sandbox_on_workers(settings).values()) == {None}
