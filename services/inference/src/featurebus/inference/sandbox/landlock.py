"""Landlock network rules for the plugin process: TCP only to the ports the operator allows.

The plugin's network namespace already has loopback only, unless the operator gives API plugins
the host's network (``FEATUREBUS_SANDBOX_EGRESS``). Then this is the kernel's part of the egress
rule: the process may open TCP connections only to ``FEATUREBUS_SANDBOX_EGRESS_PORTS`` (443 and
80 by default) and may bind none, so MongoDB, Kafka, S3, the registry and Ray's ports are out of
reach even for native code that no audit hook sees. (Which *addresses* it may reach — public
ones only — the guard checks.) Landlock applies to the calling thread and every thread it starts
afterwards: call :func:`restrict_tcp` before any thread starts.
"""

from __future__ import annotations

import ctypes
import os
import struct

__all__ = ["LandlockUnavailable", "abi_version", "restrict_tcp"]

# x86_64 and aarch64 (the generic syscall table) share these numbers.
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_NET_PORT = 2
_ACCESS_NET_BIND_TCP, _ACCESS_NET_CONNECT_TCP = 1 << 0, 1 << 1
_PR_SET_NO_NEW_PRIVS = 38
_NET_ABI = 4  # Linux 6.7: the first Landlock ABI with network rules


class LandlockUnavailable(RuntimeError):
    pass


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def abi_version() -> int:
    """The kernel's Landlock ABI (0 when Landlock is missing or disabled)."""
    libc = _libc()
    version = libc.syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(int(version), 0)


def restrict_tcp(connect_ports: list[int]) -> None:
    """From now on this thread (and threads it starts) may connect only to ``connect_ports``."""
    abi = abi_version()
    if abi < _NET_ABI:
        raise LandlockUnavailable(
            f"Landlock network rules need Linux 6.7 or later (Landlock ABI {_NET_ABI}); this kernel has ABI {abi}"
        )
    libc = _libc()
    # struct landlock_ruleset_attr up to handled_access_net: handled_access_fs = 0 (files are the
    # mount namespace's business), handled_access_net = bind and connect.
    attr = ctypes.create_string_buffer(struct.pack("=QQ", 0, _ACCESS_NET_BIND_TCP | _ACCESS_NET_CONNECT_TCP))
    fd = libc.syscall(_CREATE_RULESET, attr, ctypes.c_size_t(16), ctypes.c_uint32(0))
    if fd < 0:
        raise LandlockUnavailable(f"landlock_create_ruleset failed: {os.strerror(ctypes.get_errno())}")
    try:
        for port in sorted(set(connect_ports)):
            rule = ctypes.create_string_buffer(struct.pack("=QQ", _ACCESS_NET_CONNECT_TCP, port))
            if libc.syscall(_ADD_RULE, ctypes.c_int(fd), ctypes.c_int(_RULE_NET_PORT), rule, ctypes.c_uint32(0)):
                raise LandlockUnavailable(f"landlock_add_rule (port {port}): {os.strerror(ctypes.get_errno())}")
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0):
            raise LandlockUnavailable(f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(ctypes.get_errno())}")
        if libc.syscall(_RESTRICT_SELF, ctypes.c_int(fd), ctypes.c_uint32(0)):
            raise LandlockUnavailable(f"landlock_restrict_self failed: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)
