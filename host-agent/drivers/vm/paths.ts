/**
 * Where the VM driver keeps things under the agent's data dir. It shares
 * `templates/` (the template roots) with the sandbox driver and keeps the rest
 * under `vm/`, so neither driver ever lists the other's computers:
 *
 *   vm/images/kernel2-<package>_<version>/  the guest kernel (bzImage and its ELF) and modules, from Debian's package
 *   vm/images/boot-<hash>.cpio         initramfs: busybox, the modules the VM needs, its init scripts
 *   vm/images/base-<template>.img      read-only ext4 image of a template root (one per recipe hash)
 *   vm/images/guest-<hash>.img         read-only ext4 image with the guest agent
 *   vm/images/.build-*                 an image being built (never used)
 *   vm/computers/<id>/disk.img         the computer's own disk: sparse ext4 holding upper/ and work/
 *   vm/computers/<id>/meta.json        what the computer is (template, base image, size, apps)
 *   vm/computers/<id>/state.json       the running VM (QEMU and passt pids, start times, boot id)
 *   vm/computers/<id>/console.log      the VM's serial console: kernel, init and guest agent output
 *   vm/computers/<id>/boot/            per-boot files handed to the VM (hostname, hosts, resolv.conf)
 *   vm/computers/<id>/g.sock, c.sock   host ends of the guest and control channels (virtio-serial)
 *   vm/computers/<id>/q.sock           QEMU's QMP socket
 *   vm/computers/<id>/passt.log        the VM's network relay's log
 *   vm/computers/<id>/pasta.log        the log of the pasta connecting that relay's namespace outward
 *   vm/snapshots/<name>.img, .json     snapshots: a copy of a computer's disk.img and its meta (../snapshot-files.ts)
 */
import path from 'node:path';
import { assertSafeId } from '../sandbox/paths.ts';

export interface VmPaths {
  dir: string;
  disk: string;
  meta: string;
  state: string;
  log: string;
  qemuLog: string;
  boot: string;
  guestSocket: string;
  controlSocket: string;
  qmpSocket: string;
  passtLog: string;
  pastaLog: string;
  /** A memory snapshot of a suspended VM, resumed by the next start. */
  memory: string;
}

export const vmDir = (dataDir: string) => path.join(dataDir, 'vm');
export const imagesDir = (dataDir: string) => path.join(vmDir(dataDir), 'images');
export const vmComputersDir = (dataDir: string) => path.join(vmDir(dataDir), 'computers');
/** Apart from the sandbox's disks/snapshots/: each driver lists and removes only its own. */
export const vmSnapshotsDir = (dataDir: string) => path.join(vmDir(dataDir), 'snapshots');

export function vmPaths(dataDir: string, id: string): VmPaths {
  assertSafeId(id);
  return vmPathsIn(path.join(vmComputersDir(dataDir), id));
}

/** The same layout in any directory (a warm image is made in one of its own). */
export function vmPathsIn(dir: string): VmPaths {
  return {
    dir,
    disk: path.join(dir, 'disk.img'),
    meta: path.join(dir, 'meta.json'),
    state: path.join(dir, 'state.json'),
    log: path.join(dir, 'console.log'),
    qemuLog: path.join(dir, 'qemu.log'),
    boot: path.join(dir, 'boot'),
    // Short names: unix socket paths are limited to 107 bytes.
    guestSocket: path.join(dir, 'g.sock'),
    controlSocket: path.join(dir, 'c.sock'),
    qmpSocket: path.join(dir, 'q.sock'),
    passtLog: path.join(dir, 'passt.log'),
    pastaLog: path.join(dir, 'pasta.log'),
    memory: path.join(dir, 'memory.state'),
  };
}
