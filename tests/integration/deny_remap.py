"""Runs a command under a seccomp filter that makes the one mmap twd's SIGBUS
handler does fail: a read-only, private, anonymous mapping at a fixed address
(server/signals.c maps zero pages over a checkpoint page that vanished that
way). Every other system call, and every other mmap, is left alone. So a test
can reach the handler's other branch deterministically: the page cannot be
replaced, and twd must exit with status 3 after one line naming the file.

Usage: deny_remap.py COMMAND [ARG...]   (exits 77 where seccomp filters are
not available: Linux on x86_64 or aarch64 only)
"""
import ctypes
import os
import platform
import struct
import sys

# <linux/audit.h>, <asm/unistd.h>, <linux/seccomp.h>, <linux/filter.h>, <sys/prctl.h>
ARCH = {"x86_64": (0xC000003E, 9), "aarch64": (0xC00000B7, 222)}
PROT_READ, MAP_FIXED, MAP_ANONYMOUS = 0x1, 0x10, 0x20
ENOMEM = 12
SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO = 0x7FFF0000, 0x00050000
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
LD_ABS_W, JEQ_K, AND_K, RET_K = 0x20, 0x15, 0x54, 0x06
# offsets in struct seccomp_data: nr, arch, then the arguments (64 bits each;
# the low half first on these little-endian machines): prot is the 3rd, flags the 4th
OFF_NR, OFF_ARCH, OFF_PROT, OFF_FLAGS = 0, 4, 16 + 2 * 8, 16 + 3 * 8


def program(arch, nr):
    """The filter: ENOMEM for mmap(..., PROT_READ, MAP_FIXED|MAP_ANONYMOUS|..., ...)."""
    ins = [
        (LD_ABS_W, 0, 0, OFF_ARCH),
        (JEQ_K, 0, 8, arch),                       # another ABI: allow
        (LD_ABS_W, 0, 0, OFF_NR),
        (JEQ_K, 0, 6, nr),                         # not mmap: allow
        (LD_ABS_W, 0, 0, OFF_PROT),
        (JEQ_K, 0, 4, PROT_READ),                  # not read-only: allow
        (LD_ABS_W, 0, 0, OFF_FLAGS),
        (AND_K, 0, 0, MAP_FIXED | MAP_ANONYMOUS),
        (JEQ_K, 0, 1, MAP_FIXED | MAP_ANONYMOUS),  # not both: allow
        (RET_K, 0, 0, SECCOMP_RET_ERRNO | ENOMEM),
        (RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]
    return b"".join(struct.pack("=HBBI", *i) for i in ins), len(ins)


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    if sys.platform != "linux" or platform.machine() not in ARCH:
        print("deny_remap: no seccomp filter for %s %s" % (sys.platform, platform.machine()), file=sys.stderr)
        sys.exit(77)
    code, n = program(*ARCH[platform.machine()])
    libc = ctypes.CDLL(None, use_errno=True)
    prog = SockFprog(n, code)
    if (libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            or libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0):
        print("deny_remap: seccomp filter refused: %s" % os.strerror(ctypes.get_errno()), file=sys.stderr)
        sys.exit(77)
    os.execvp(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
