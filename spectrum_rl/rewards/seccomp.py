"""A seccomp-BPF filter for the code sandbox: the kernel refuses system calls that sandboxed code
has no use for and that widen the kernel's attack surface.

The filter is a classic BPF program over ``struct seccomp_data`` (seccomp(2)):

    arch != this machine's        -> kill the process (no 32-bit or x32 detours)
    nr in DENIED                  -> EPERM   (namespaces, mounts, ptrace, keyrings, bpf, io_uring, modules, ...)
    nr == clone and flags & NEW*  -> EPERM   (no nested user/mount/pid/net/ipc/uts/cgroup namespace)
    nr == clone3                  -> ENOSYS  (its flags sit in memory BPF cannot read; libc falls back to clone)
    otherwise                     -> allow

bubblewrap loads it (``--seccomp FD``) after ``no_new_privs`` and before it executes the sandboxed
command. The deny list follows the spirit of Docker's default profile (docs.docker.com, "Seccomp
security profiles for Docker"), reduced to what a pure-Python test run never needs. Stdlib only.
"""

from __future__ import annotations

import platform
import struct

# Classic BPF opcodes (linux/bpf_common.h) and seccomp return values (linux/seccomp.h).
_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_KILL_PROCESS, _ALLOW, _ERRNO = 0x80000000, 0x7FFF0000, 0x00050000
_EPERM, _ENOSYS = 1, 38
_OFFSET_NR, _OFFSET_ARCH, _OFFSET_ARG0 = 0, 4, 16
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET (linux/sched.h).
_CLONE_NEW_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
_X32_BIT = 0x40000000  # x86-64 syscalls with this bit set use the x32 ABI

# Per architecture: AUDIT_ARCH value, then syscall numbers (asm/unistd_64.h; aarch64 uses the
# generic table asm-generic/unistd.h).
_DENIED_NAMES = (
    "unshare setns mount umount2 pivot_root chroot mount_setattr open_tree move_mount fsopen fsconfig fsmount "
    "fspick ptrace process_vm_readv process_vm_writev add_key request_key keyctl bpf perf_event_open userfaultfd "
    "io_uring_setup io_uring_enter io_uring_register init_module finit_module delete_module kexec_load "
    "kexec_file_load acct swapon swapoff reboot syslog quotactl vhangup lookup_dcookie name_to_handle_at "
    "open_by_handle_at fanotify_init"
).split()
_ARCHES = {
    "x86_64": (
        0xC000003E,
        dict(
            zip(
                _DENIED_NAMES,
                (272, 308, 165, 166, 155, 161, 442, 428, 429, 430, 431, 432, 433, 101, 310, 311, 248, 249, 250, 321)
                + (298, 323, 425, 426, 427, 175, 313, 176, 246, 320, 163, 167, 168, 169, 103, 179, 153, 212, 303)
                + (304, 300),
            )
        ),
        {"clone": 56, "clone3": 435},
    ),
    "aarch64": (
        0xC00000B7,
        dict(
            zip(
                _DENIED_NAMES,
                (97, 268, 40, 39, 41, 51, 442, 428, 429, 430, 431, 432, 433, 117, 270, 271, 217, 218, 219, 280)
                + (241, 282, 425, 426, 427, 105, 273, 106, 104, 294, 89, 224, 225, 142, 116, 60, 58, 18, 264)
                + (265, 262),
            )
        ),
        {"clone": 220, "clone3": 435},
    ),
}
_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


def supported_arch() -> str | None:
    """This machine's architecture name when the filter knows its system call table, else None."""
    arch = platform.machine().lower()
    arch = _ALIASES.get(arch, arch)
    return arch if arch in _ARCHES else None


def filter_program() -> bytes:
    """The filter as an array of ``struct sock_filter`` (what ``bwrap --seccomp`` reads)."""
    arch = supported_arch()
    if arch is None:
        raise RuntimeError(f"no seccomp system call table for architecture '{platform.machine()}'")
    audit_arch, denied, special = _ARCHES[arch]
    # (code, jump-if-true label, jump-if-false label, k); labels are resolved to relative offsets.
    program: list[tuple[int, str | None, str | None, int]] = [
        (_LD_W_ABS, None, None, _OFFSET_ARCH),
        (_JEQ_K, None, "kill", audit_arch),
        (_LD_W_ABS, None, None, _OFFSET_NR),
    ]
    if arch == "x86_64":
        program.append((_JGE_K, "kill", None, _X32_BIT))
    program += [(_JEQ_K, "eperm", None, nr) for nr in sorted(denied.values())]
    program += [
        (_JEQ_K, "enosys", None, special["clone3"]),
        (_JEQ_K, "clone", None, special["clone"]),
        (_RET_K, None, None, _ALLOW),
    ]
    labels = {"clone": len(program)}
    program += [
        (_LD_W_ABS, None, None, _OFFSET_ARG0),  # the low 32 bits of clone's flags (little endian)
        (_JSET_K, "eperm", None, _CLONE_NEW_NAMESPACES),
        (_RET_K, None, None, _ALLOW),
    ]
    for label, value in (("eperm", _ERRNO | _EPERM), ("enosys", _ERRNO | _ENOSYS), ("kill", _KILL_PROCESS)):
        labels[label] = len(program)
        program.append((_RET_K, None, None, value))
    out = bytearray()
    for i, (code, if_true, if_false, k) in enumerate(program):
        jt = labels[if_true] - i - 1 if if_true else 0
        jf = labels[if_false] - i - 1 if if_false else 0
        out += struct.pack("=HBBI", code, jt, jf, k)
    return bytes(out)
