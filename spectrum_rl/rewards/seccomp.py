"""A seccomp-BPF filter for the code sandbox: the kernel refuses system calls that sandboxed code
has no use for and that widen the kernel's attack surface.

The filter is a classic BPF program over ``struct seccomp_data`` (seccomp(2)):

    arch != this machine's        -> kill the process (no 32-bit or x32 detours)
    nr in DENIED                  -> EPERM   (namespaces, mounts, ptrace, keyrings, bpf, io_uring, modules, ...;
                                              memfds, System V shared memory and sockets where no cgroup
                                              counts the memory they hold)
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

# System call numbers: x86_64 (asm/unistd_64.h), aarch64 (the generic table, asm-generic/unistd.h).
_SYSCALLS = {
    "unshare": (272, 97), "setns": (308, 268), "mount": (165, 40), "umount2": (166, 39), "pivot_root": (155, 41),
    "chroot": (161, 51), "mount_setattr": (442, 442), "open_tree": (428, 428), "move_mount": (429, 429),
    "fsopen": (430, 430), "fsconfig": (431, 431), "fsmount": (432, 432), "fspick": (433, 433), "ptrace": (101, 117),
    "process_vm_readv": (310, 270), "process_vm_writev": (311, 271), "add_key": (248, 217),
    "request_key": (249, 218), "keyctl": (250, 219), "bpf": (321, 280), "perf_event_open": (298, 241),
    "userfaultfd": (323, 282), "io_uring_setup": (425, 425), "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427), "init_module": (175, 105), "finit_module": (313, 273),
    "delete_module": (176, 106), "kexec_load": (246, 104), "kexec_file_load": (320, 294), "acct": (163, 89),
    "swapon": (167, 224), "swapoff": (168, 225), "reboot": (169, 142), "syslog": (103, 116), "quotactl": (179, 60),
    "vhangup": (153, 58), "lookup_dcookie": (212, 18), "name_to_handle_at": (303, 264),
    "open_by_handle_at": (304, 265), "fanotify_init": (300, 262),
}  # fmt: skip
# Ways to make the kernel hold memory outside the address space (RLIMIT_AS does not count it):
# refused where no cgroup counts it (rewards/cgroup.py). Socket buffers reach 8 MiB per socket.
_UNCOUNTED_MEMORY = {
    "memfd_create": (319, 279), "memfd_secret": (447, 447), "shmget": (29, 194), "shmat": (30, 196),
    "shmctl": (31, 195), "socket": (41, 198), "socketpair": (53, 199),
}  # fmt: skip
_CLONE, _CLONE3 = {"x86_64": 56, "aarch64": 220}, 435
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_COLUMN = {"x86_64": 0, "aarch64": 1}
_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


def supported_arch() -> str | None:
    """This machine's architecture name when the filter knows its system call table, else None."""
    arch = platform.machine().lower()
    arch = _ALIASES.get(arch, arch)
    return arch if arch in _AUDIT_ARCH else None


def filter_program(counted_memory: bool = True) -> bytes:
    """The filter as an array of ``struct sock_filter`` (what ``bwrap --seccomp`` reads);
    ``counted_memory=False`` (no cgroup) also refuses memfds, System V shared memory and sockets."""
    arch = supported_arch()
    if arch is None:
        raise RuntimeError(f"no seccomp system call table for architecture '{platform.machine()}'")
    table = _SYSCALLS if counted_memory else _SYSCALLS | _UNCOUNTED_MEMORY
    audit_arch, denied = _AUDIT_ARCH[arch], [numbers[_COLUMN[arch]] for numbers in table.values()]
    # (code, jump-if-true label, jump-if-false label, k); labels are resolved to relative offsets.
    program: list[tuple[int, str | None, str | None, int]] = [
        (_LD_W_ABS, None, None, _OFFSET_ARCH),
        (_JEQ_K, None, "kill", audit_arch),
        (_LD_W_ABS, None, None, _OFFSET_NR),
    ]
    if arch == "x86_64":
        program.append((_JGE_K, "kill", None, _X32_BIT))
    program += [(_JEQ_K, "eperm", None, nr) for nr in sorted(denied)]
    program += [
        (_JEQ_K, "enosys", None, _CLONE3),
        (_JEQ_K, "clone", None, _CLONE[arch]),
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
