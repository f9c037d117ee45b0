"""Hangar guest agent: the daemon inside each computer that the host agent talks to.

It is the computer's first process (pid 1 of its pid namespace): when it dies,
the computer is down. It runs commands as `user`, streams output, and keeps
spawned processes alive across host reconnects. schema/guest.ts is the
contract. Python 3.9+ stdlib only.

Modules, one per concern:
    common     version, errors, logging, boot identity
    framing    the wire format and one host connection (transport)
    identity   who `user` and root are (uids, groups, base environment)
    processes  starting, reaping and signalling processes; output rings
    exec       op exec: run to completion, answer with the output
    spawn      ops spawn/attach/stdin/ack/...: long-lived streamed processes
    env        op setenv: the computer's environment
    tcp        ops tcp_*: connections to the computer's ports, for the relay
    serial     the channel in a VM: host connections over one virtio-serial port
    machine    op machine: a VM started from another's memory takes its own identity
    fsident    file work as `user` (or root) in worker threads
    files      op fs: stat, list, mkdir, rename, copy, chmod, delete
    filestream op file_open: a file's bytes (read, write, pack, unpack) as a tcp-family stream
    inotify    recursive inotify through libc
    watch      ops watch/unwatch: process, file and idle events of the computer
    main       op dispatch, the listening socket, the command line
"""
