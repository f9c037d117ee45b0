/** Computer sizes: the limits the host agent enforces and what a running hour costs. */
export const SIZES = {
  small: { vcpus: 1, memory_mb: 4096, credits_per_hour: 1 },
  medium: { vcpus: 2, memory_mb: 8192, credits_per_hour: 2 },
  large: { vcpus: 4, memory_mb: 16384, credits_per_hour: 4 },
} as const;

export type Size = keyof typeof SIZES;
export const SIZE_NAMES = Object.keys(SIZES) as [Size, ...Size[]];
