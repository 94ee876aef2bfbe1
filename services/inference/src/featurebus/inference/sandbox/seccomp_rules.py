"""The seccomp filter of a plugin process: no new processes, none of the kernel's escape hatches.

Everything else is allowed (threads included); the namespaces and mounts around the process do the
rest. A refused call fails with EPERM (ENOSYS for ``clone3``, so that libc falls back to ``clone``,
whose flags a filter can read), so plugin code sees an ordinary ``PermissionError``.
"""

from __future__ import annotations

import errno

__all__ = ["REFUSED_SYSCALLS", "install"]

_CLONE_THREAD = 0x00010000

# Each refused for a reason a plugin never has: starting programs or processes, tracing or
# reading other processes, changing namespaces or mounts, loading kernel code, keyrings, BPF,
# io_uring (its operations bypass seccomp), userfaultfd, and anonymous executable files.
REFUSED_SYSCALLS = (
    "execve", "execveat", "fork", "vfork",
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "move_mount", "open_tree",
    "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "bpf", "perf_event_open", "userfaultfd", "memfd_create", "memfd_secret",
    "keyctl", "add_key", "request_key",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "reboot", "swapon", "swapoff", "syslog", "acct", "quotactl", "personality",
    "open_by_handle_at", "name_to_handle_at", "lookup_dcookie", "iopl", "ioperm",
)  # fmt: skip


def install() -> None:
    """Load the filter into this process (and every thread it starts from now on)."""
    import pyseccomp as seccomp

    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    rules.set_attr(seccomp.Attr.CTL_TSYNC, 1)  # every thread of the process, not just this one
    refused = seccomp.ERRNO(errno.EPERM)
    for name in REFUSED_SYSCALLS:
        try:
            rules.add_rule(refused, name)
        except Exception:  # a name this kernel/arch does not have (e.g. memfd_secret): nothing to refuse
            continue
    # clone: threads only (CLONE_THREAD set); clone3 hides its flags in memory, so refuse it as
    # "not implemented" and libc uses clone.
    rules.add_rule(refused, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, _CLONE_THREAD, 0))
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    rules.load()
