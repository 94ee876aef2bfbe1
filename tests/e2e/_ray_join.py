"""``ray start`` for a node that joins a cluster on this machine and stays on 127.0.0.1.

    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 python tests/e2e/_ray_join.py start --address 127.0.0.1:PORT ...

With ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` every process of a node takes ``--node-ip-address
127.0.0.1`` as it is and listens on loopback only; without it Ray swaps 127.0.0.1 for the
machine's own address and its agents listen on every interface, unauthenticated. But the ``ray``
command refuses to *join* a cluster under that variable (it means "no multi-node" on Windows and
macOS). This runs the same command with that one refusal lifted: its flag is read through the
``scripts`` module alone, while address resolution (``ray._private.services``) still sees the
variable.
"""

from __future__ import annotations

import types

import ray._private.ray_constants as ray_constants
from ray.scripts import scripts


def main() -> None:
    joinable = types.ModuleType(ray_constants.__name__)
    joinable.__dict__.update(vars(ray_constants))
    joinable.ENABLE_RAY_CLUSTER = True  # type: ignore[attr-defined]
    scripts.ray_constants = joinable
    scripts.main()


if __name__ == "__main__":
    main()
