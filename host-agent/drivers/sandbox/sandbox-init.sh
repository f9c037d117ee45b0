#!/bin/sh
# Boots one computer. Run detached by the host agent (launch.ts) as
#   sh sandbox-init.sh outer
# with its settings in H_* environment variables.
#
# Why not bubblewrap: bwrap always sets PR_SET_NO_NEW_PRIVS, and with it sudo
# (setuid) cannot work inside. So this script does what bwrap would, with
# util-linux (unshare, mount, pivot_root) and setpriv, and without
# no_new_privs: new pid, mount, uts, ipc, net and cgroup namespaces, an
# overlay root, pivot_root (the host's root is detached, not just chrooted
# away from), and a capability bounding set equal to Docker's default, so
# root inside can do what root in a container can and no more (no
# CAP_SYS_ADMIN, no CAP_DAC_READ_SEARCH, no CAP_SYS_MODULE...).
set -eu

if [ "${1:-}" = outer ]; then
  # Join the computer's cgroups first: everything started from here inherits them.
  for f in $H_CGROUP_PROCS; do echo $$ > "$f"; done
  # --kill-child: if this launcher dies, the computer dies with it.
  exec unshare --pid --fork --kill-child --mount --uts --ipc --net --cgroup --propagation private -- /bin/sh "$0" inner
fi
[ "${1:-}" = inner ] || { echo "usage: $0 outer" >&2; exit 2; }

fail() { echo "hangar-init: $*" >&2; exit 1; }
R=$H_MNT

# nodev: device nodes root creates inside (it has CAP_MKNOD, like in Docker) cannot be opened.
mount -t overlay overlay -o "nodev,lowerdir=$H_LOWER,upperdir=$H_UPPER,workdir=$H_WORK" "$R"

# A previous run may have planted symlinks on the disk (e.g. /run -> /etc on the
# host's side of a mount path). Nothing of the computer runs while this script
# does, so a path checked here cannot change before it is used.
inside() { [ "$(realpath -m "$R$1")" = "$R$1" ]; }
for d in /proc /sys /dev /run; do
  inside "$d" && [ -d "$R$d" ] || fail "the computer's disk is damaged: $d is not a directory"
done

mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
# As in Docker: kernel tunables read-only, a few host-revealing files masked.
for p in sys sysrq-trigger irq bus fs; do
  if [ -e "$R/proc/$p" ]; then mount --bind "$R/proc/$p" "$R/proc/$p"; mount -o remount,bind,ro "$R/proc/$p"; fi
done
for p in kcore keys timer_list sched_debug; do
  if [ -e "$R/proc/$p" ]; then mount --bind /dev/null "$R/proc/$p"; fi
done
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"

mount -t tmpfs -o nosuid,nodev,noexec,mode=755,size=64k tmpfs "$R/dev"
for d in null zero full random urandom tty; do
  touch "$R/dev/$d"
  mount --bind "/dev/$d" "$R/dev/$d"
done
mkdir "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,nosuid,noexec,ptmxmode=0666,mode=620,gid=5 devpts "$R/dev/pts"
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs "$R/dev/shm"
ln -s pts/ptmx "$R/dev/ptmx"
ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"
ln -s /proc/self/fd/1 "$R/dev/stdout"
ln -s /proc/self/fd/2 "$R/dev/stderr"

mount -t tmpfs -o nosuid,nodev,mode=755 tmpfs "$R/run"
mkdir -m 1777 "$R/run/lock"
mkdir -m 700 "$R/run/hangar"
mount --bind "$H_RUN" "$R/run/hangar"
mkdir -m 755 "$R/run/hangar-guest"
mount --bind "$H_GUEST" "$R/run/hangar-guest"
mount -o remount,bind,ro,nosuid,nodev "$R/run/hangar-guest"

# Operator directories shared read-only at the same path (e.g. a local package mirror).
printf '%s\n' "${H_SHARES:-}" | while IFS= read -r share; do
  [ -n "$share" ] || continue
  if [ ! -d "$share" ]; then echo "hangar-init: not sharing $share: it does not exist on the host" >&2; continue; fi
  if ! inside "$share"; then echo "hangar-init: not sharing $share: a symlink on the disk is in the way" >&2; continue; fi
  mkdir -p "$R$share"
  mount --bind "$share" "$R$share"
  mount -o remount,bind,ro,nosuid,nodev "$R$share"
done

hostname "$H_HOSTNAME"

cd "$R"
pivot_root . .
umount -l .
cd /

# From here on, paths resolve inside the computer: a symlink can only point within it.
for f in hostname hosts resolv.conf; do
  if [ -L "/etc/$f" ]; then rm -f "/etc/$f"; fi
  cat "/run/hangar/boot/$f" > "/etc/$f" || echo "hangar-init: cannot write /etc/$f" >&2
done

umask 022
exec setpriv \
  --bounding-set=-all,+chown,+dac_override,+fowner,+fsetid,+kill,+setgid,+setuid,+setpcap,+net_bind_service,+net_raw,+sys_chroot,+mknod,+audit_write,+setfcap \
  --inh-caps=-all \
  -- /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HANGAR_BOOT_ID="$H_BOOT_ID" \
  /usr/bin/python3 -I /run/hangar-guest --listen /run/hangar/guest.sock
