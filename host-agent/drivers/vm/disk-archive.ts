/**
 * A VM computer's disk as one archive, for moving it to another host: GNU
 * tar of disk.img (sparse: holes are not sent) and meta.json. The template's
 * base image is not in it — the target builds its own from the same template
 * recipe — so a move ships only what the computer itself wrote.
 *
 * An import unpacks into a temp dir beside the disks, checks the meta it
 * brought, points it at this host's copy of the same template, and is renamed
 * into place; until then list() does not see it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { DriverError, type DiskExport } from '../driver.ts';
import { TarUnpack, archivedMeta, localTemplate, tarOut } from '../disk-tar.ts';
import type { VmMeta } from './disk.ts';
import { vmComputersDir, vmPaths, type VmPaths } from './paths.ts';

const MEMBERS = ['disk.img', 'meta.json'];

/** meta.json as another host wrote it: checked, not trusted. */
const ArchivedMeta = z.object({
  id: z.string(),
  name: z.string(),
  hostname: z.string().max(63),
  template_dir: z.string().min(1),
  vcpus: z.number().int().positive(),
  memory_mb: z.number().int().positive(),
  disk_mb: z.number().int().positive(),
  apps_installed: z.array(z.string()),
  created_at: z.string(),
});

/** Starts tar reading the disk of a stopped VM computer; its stdout is the archive. */
export function readArchive(paths: VmPaths): DiskExport {
  return tarOut(['--sparse', '--format=posix', '-C', paths.dir, '-cf', '-', ...MEMBERS]);
}

/** An archive being unpacked into a temp dir, to become computer `id`'s disk. */
export class ArchiveWriter {
  private readonly dataDir: string;
  private readonly id: string;
  private readonly tar: TarUnpack;

  constructor(dataDir: string, id: string) {
    this.dataDir = dataDir;
    this.id = id;
    this.tar = new TarUnpack(vmComputersDir(dataDir), `.${id}.tmp-`, ['--no-same-owner'], MEMBERS);
  }

  private get tmp(): string {
    return this.tar.dir;
  }

  write(chunk: Uint8Array): Promise<void> {
    return this.tar.write(chunk);
  }

  /** Waits for tar, checks the meta and the image, points it at this host's template and renames the disk into place. */
  async commit(): Promise<void> {
    try {
      await this.tar.finish();
      const meta = this.checkedMeta();
      fs.writeFileSync(path.join(this.tmp, 'meta.json'), JSON.stringify(meta, null, 2) + '\n');
      const target = vmPaths(this.dataDir, this.id).dir;
      if (fs.existsSync(target)) throw new DriverError('FAILED', `computer ${this.id} already has a disk on this host`);
      fs.renameSync(this.tmp, target);
    } catch (err) {
      await this.abort();
      throw err instanceof DriverError ? err : new DriverError('FAILED', `placing the disk failed: ${(err as Error).message}`);
    }
  }

  abort(): Promise<void> {
    return this.tar.abort();
  }

  private checkedMeta(): VmMeta {
    const meta = archivedMeta(this.tmp, ArchivedMeta, this.id);
    const image = fs.statSync(path.join(this.tmp, 'disk.img'), { throwIfNoEntry: false });
    if (!image?.isFile() || image.size !== meta.disk_mb * 1024 * 1024) throw new DriverError('FAILED', 'the disk archive has no disk image of the size its meta says');
    return { ...meta, template_dir: localTemplate(this.dataDir, meta.template_dir) };
  }
}
