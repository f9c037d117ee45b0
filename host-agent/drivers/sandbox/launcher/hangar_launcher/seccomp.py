"""The computer's system call filter: at least as strict as Docker's default profile.

An allowlist (syscall_table.ALLOWED) checked by a classic BPF program built
here, without libseccomp. Everything else answers EPERM, as in Docker, and the
calling process lives on. On top of the plain list:
  - only the native x86_64 ABI: i386 and x32 calls are refused (EPERM);
  - clone: refused when it asks for new namespaces (so no user, mount or other
    namespaces inside; unshare and setns are not allowed at all);
  - clone3: ENOSYS, so the C library falls back to clone, whose flags we can read;
  - socket: everything but AF_VSOCK;
  - personality: only the values Docker allows (Linux, 32-bit time quirks off/on, query);
  - calls newer than this table (numbers above HIGHEST_KNOWN): ENOSYS, so a newer
    C library falls back to an older call instead of failing.
Denied by omission, among others: keyring calls (add_key, keyctl, request_key),
bpf, perf_event_open, kexec_*, init/finit/delete_module, open_by_handle_at,
userfaultfd, mount and the new mount API, pivot_root, swapon/off, reboot,
settimeofday/clock_settime, acct, quotactl, unshare, setns, io_uring_*. ptrace is allowed
(Docker allows it on kernels >= 4.8; inside a user namespace it reaches only the
computer's own processes).
The list lives in docs/security.md too.
"""

import errno
import struct

from . import syscall_table
from .syscalls import seccomp_install

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000

# struct seccomp_data offsets
OFF_NR = 0
OFF_ARCH = 4


def OFF_ARG_LO(i):
    return 16 + 8 * i


LD_W_ABS = 0x20
JEQ = 0x15
JGT = 0x25
JGE = 0x35
JSET = 0x45
RET = 0x06

RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
DENY = RET_ERRNO | errno.EPERM
NOSYS = RET_ERRNO | errno.ENOSYS

CLONE_NAMESPACE_FLAGS = 0x7E020000  # NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
AF_VSOCK = 40
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

SECCOMP_FILTER_FLAG_SPEC_ALLOW = 1 << 2


def ins(code, k=0, jt=0, jf=0):
    if not (0 <= jt <= 255 and 0 <= jf <= 255):
        raise ValueError("seccomp program: jump too far")
    return (code, jt, jf, k)


def ranges(numbers):
    """Sorted numbers as [(first, last)] runs."""
    out = []
    for n in sorted(numbers):
        if out and out[-1][1] == n - 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out


def range_tree(runs):
    """Code that returns ALLOW when the loaded number lies in one of `runs`, DENY otherwise (binary search)."""
    if len(runs) == 1:
        first, last = runs[0]
        return [ins(JGE, first, 0, 2), ins(JGT, last, 1, 0), ins(RET, RET_ALLOW), ins(RET, DENY)]
    mid = len(runs) // 2
    right = range_tree(runs[mid:])
    left = range_tree(runs[:mid])
    return [ins(JGE, runs[mid][0], 0, len(right))] + right + left


def arg_check(arg, allowed_values=None, denied_mask=None, denied_value=None):
    """Code that tests the low 32 bits of an argument (flags, domains and personas are 32-bit)."""
    code = [ins(LD_W_ABS, OFF_ARG_LO(arg))]
    if denied_mask is not None:
        return code + [ins(JSET, denied_mask, 1, 0), ins(RET, RET_ALLOW), ins(RET, DENY)]
    if denied_value is not None:
        return code + [ins(JEQ, denied_value, 1, 0), ins(RET, RET_ALLOW), ins(RET, DENY)]
    n = len(allowed_values)
    out = code
    for i, v in enumerate(allowed_values):
        out.append(ins(JEQ, v, n - i, 0))  # to the ALLOW after the last test
    return out + [ins(RET, DENY), ins(RET, RET_ALLOW)]


def build():
    """The filter program as a list of (code, jt, jf, k)."""
    specials = [
        (syscall_table.CLONE, arg_check(0, denied_mask=CLONE_NAMESPACE_FLAGS)),
        (syscall_table.SOCKET, arg_check(0, denied_value=AF_VSOCK)),
        (syscall_table.PERSONALITY, arg_check(0, allowed_values=PERSONALITIES)),
        (syscall_table.CLONE3, [ins(RET, NOSYS)]),
    ]
    tree = range_tree(ranges(syscall_table.ALLOWED.values()))
    # Layout: header, one JEQ per special (jumping over the rest of the JEQs, the range
    # check and the earlier specials' bodies), the range check, then the special bodies.
    body = []
    offsets = []
    for _, code in specials:
        offsets.append(len(body))
        body += code
    prog = [
        ins(LD_W_ABS, OFF_ARCH),
        ins(JEQ, AUDIT_ARCH_X86_64, 1, 0),
        ins(RET, DENY),
        ins(LD_W_ABS, OFF_NR),
        ins(JGE, X32_SYSCALL_BIT, 0, 1),
        ins(RET, DENY),
    ]
    n = len(specials)
    after_jeqs = 2 + len(tree)  # the high-number check (2 instructions) and the range tree
    for i, (nr, _) in enumerate(specials):
        remaining_jeqs = n - i - 1
        prog.append(ins(JEQ, nr, remaining_jeqs + after_jeqs + offsets[i], 0))
    prog += [ins(JGT, syscall_table.HIGHEST_KNOWN, 0, 1), ins(RET, NOSYS)]
    prog += tree
    prog += body
    return prog


def encode(prog):
    return b"".join(struct.pack("=HBBI", code, jt, jf, k) for code, jt, jf, k in prog)


def install():
    """Installs the filter on this process; it holds for everything it executes and forks from here on."""
    program = encode(build())
    try:
        # Like runc: no forced speculative-store-bypass mitigation for filtered processes (it costs speed).
        seccomp_install(program, SECCOMP_FILTER_FLAG_SPEC_ALLOW)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        seccomp_install(program, 0)
