from __future__ import annotations

import pytest

from featurebus.common.startup import until_ready


async def test_until_ready_retries_until_the_dependency_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_sleep(_: float) -> None:
        return None

    monkeypatch.setattr("featurebus.common.startup.asyncio.sleep", no_sleep)
    calls = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError("not yet")
        return "up"

    assert await until_ready("kafka", flaky, timeout=60) == "up"
    assert len(calls) == 3


async def test_until_ready_gives_up_naming_the_dependency() -> None:
    async def down() -> None:
        raise ConnectionRefusedError("refused")

    with pytest.raises(RuntimeError, match="mongodb not ready after 0s"):
        await until_ready("mongodb", down, timeout=0.1)
