"""Hangar's sandbox launcher: makes one computer out of namespaces, idmapped mounts and a filter.

Started by the host agent (host-agent/drivers/sandbox/launch.ts) as host root,
with the guest runtime's own interpreter (so it needs nothing of the host's
Python), and its settings as JSON in the HANGAR_LAUNCH environment variable.
It stays alive as the computer's launcher: its death ends the computer.
See launch.py for the order of things and why.

Modules:
    syscalls      ctypes wrappers of the system calls the standard library lacks
    uid_ranges    machine-wide allocation of host uid/gid ranges, one per running computer
    mounts        the computer's root: overlay, /proc, /sys, /dev, /run, then pivot_root
    seccomp       the system call filter (a classic BPF program built here)
    syscall_table x86_64 numbers of the allowed calls
    launch        the three processes (launcher, namespace holder, pid 1) and their handshake
"""
