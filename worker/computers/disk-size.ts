/**
 * Disk quotas of new computers: each size's disk_gb (schema/sizes.ts), unless
 * the operator sets COMPUTER_DISK_GB — one whole number of GiB for every size
 * ("10"), or some sizes as JSON ({"small": 10, "large": 200}). A test stack
 * uses small disks this way. A value that is not one of those shapes is
 * ignored (with a log line), never an error a tenant would see.
 */
import { z } from 'zod';
import { SIZES, type Size } from '../../schema/sizes.ts';
import type { Env } from '../env.ts';

const Gib = z.coerce.number().int().positive().max(65_536);
const PerSize = z.object({ small: Gib, medium: Gib, large: Gib }).partial().strict();

/** The disk quota a new computer of `size` gets. */
export function diskGbFor(env: Pick<Env, 'COMPUTER_DISK_GB'>, size: Size): number {
  const raw = env.COMPUTER_DISK_GB?.trim();
  if (raw) {
    const all = Gib.safeParse(raw);
    if (all.success) return all.data;
    const perSize = PerSize.safeParse(safeJson(raw));
    if (perSize.success) return perSize.data[size] ?? SIZES[size].disk_gb;
    console.error(`COMPUTER_DISK_GB ${JSON.stringify(raw)} is neither a number of GiB nor {"small": n, ...}: using the sizes' disks`);
  }
  return SIZES[size].disk_gb;
}

/** The quota of an existing computer (NULL for computers made before quotas: their size's default). */
export function diskGbOf(row: { disk_gb: number | null; size: Size }): number {
  return row.disk_gb ?? SIZES[row.size].disk_gb;
}

/** After a resize: the new size's disk if larger; a disk never shrinks. */
export function resizedDiskGb(env: Pick<Env, 'COMPUTER_DISK_GB'>, row: { disk_gb: number | null; size: Size }, size: Size): number {
  return Math.max(diskGbOf(row), diskGbFor(env, size));
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
