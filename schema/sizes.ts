/**
 * Computer sizes: the limits the host agent enforces and what a running hour
 * costs. disk_gb is the disk quota a computer gets when it is made (an
 * operator may set other disk sizes: worker/computers/disk-size.ts); disks are
 * sparse, so a host spends only what computers write.
 */
export const SIZES = {
  small: { vcpus: 1, memory_mb: 4096, disk_gb: 20, credits_per_hour: 1 },
  medium: { vcpus: 2, memory_mb: 8192, disk_gb: 40, credits_per_hour: 2 },
  large: { vcpus: 4, memory_mb: 16384, disk_gb: 80, credits_per_hour: 4 },
} as const;

export type Size = keyof typeof SIZES;
export const SIZE_NAMES = Object.keys(SIZES) as [Size, ...Size[]];
