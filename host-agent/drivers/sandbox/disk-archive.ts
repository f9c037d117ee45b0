/**
 * A computer's disk as one archive, for moving it to another host: GNU tar of
 * its meta.json and its disk image (as member `disk.img`), sparse, so the
 * image's holes cost nothing in transit or on the other side. The image keeps
 * everything the overlay needs (owners, modes, xattrs, whiteouts) inside it.
 * Archives of the old layout (an `upper` dir instead of an image) are still
 * taken: that disk is converted at its first boot here (legacy-disk.ts).
 *
 * An import unpacks into a temp dir next to the disk images, checks what it
 * brought (only those members, a regular-file image, a meta for this computer
 * on a template this host has), and is moved into place; until then list()
 * does not see it, and a crash leaves only a temp dir that
 * removeAbandonedDisks clears.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { DriverError, type DiskExport } from '../driver.ts';
import { TarUnpack, archivedMeta, localTemplate, tarOut } from '../disk-tar.ts';
import { computerPaths, computersDir, disksDir, type ComputerPaths } from './paths.ts';
import type { ComputerMeta } from './disk.ts';
import { runCommand } from './run-command.ts';

const KEEP = ['--xattrs', '--xattrs-include=*', '--acls', '--numeric-owner'];

/** meta.json as another host wrote it: checked, not trusted. */
const ArchivedMeta = z.object({
  id: z.string(),
  name: z.string(),
  hostname: z.string().max(63),
  template_dir: z.string().min(1),
  vcpus: z.number().int().positive(),
  memory_mb: z.number().int().positive(),
  disk_gb: z.number().int().positive().max(65_536).optional(),
  apps_installed: z.array(z.string()),
  created_at: z.string(),
});

/** Starts tar reading the disk of a stopped computer; its stdout is the archive. */
export function readArchive(paths: ComputerPaths): DiskExport {
  const args = ['--sparse', '--format=posix', '-C', paths.dir, '-cf', '-', 'meta.json'];
  if (fs.existsSync(paths.image)) {
    const name = path.basename(paths.image);
    args.push('-C', path.dirname(paths.image), `--transform=s,^${name.replace(/\./g, '\\.')}$,disk.img,`, name);
  } else {
    args.unshift(...KEEP);
    args.push('upper'); // a disk of the old layout, never booted since
  }
  return tarOut(args);
}

/** An archive being unpacked into a temp dir, to become computer `id`'s disk. */
export class ArchiveWriter {
  private readonly dataDir: string;
  private readonly id: string;
  private readonly tar: TarUnpack;

  constructor(dataDir: string, id: string) {
    this.dataDir = dataDir;
    this.id = id;
    // Next to the images, so the image is renamed (not copied) into place; what the archive holds is checked at commit.
    this.tar = new TarUnpack(disksDir(dataDir), `.import-${id}-`, [...KEEP, '--same-owner', '--same-permissions']);
  }

  private get tmp(): string {
    return this.tar.dir;
  }

  write(chunk: Uint8Array): Promise<void> {
    return this.tar.write(chunk);
  }

  /** Waits for tar, checks what it unpacked, points the meta at this host's template and moves the disk into place. */
  async commit(): Promise<void> {
    try {
      await this.tar.finish();
      const meta = this.checkedMeta();
      const members = fs.readdirSync(this.tmp).sort();
      const image = path.join(this.tmp, 'disk.img');
      const legacy = path.join(this.tmp, 'upper');
      const kind = (p: string) => fs.lstatSync(p, { throwIfNoEntry: false });
      let layout: 'image' | 'legacy';
      if (members.join(',') === 'disk.img,meta.json' && kind(image)?.isFile()) layout = 'image';
      else if (members.join(',') === 'meta.json,upper' && kind(legacy)?.isDirectory()) layout = 'legacy';
      else throw new DriverError('FAILED', `the disk archive holds ${members.join(', ') || 'nothing'}, not meta.json and a disk`);
      // The image came from another host: the kernel mounts it only once e2fsck finds it sound
      // (exit codes 0-3: clean or fixed; 4 and up: errors left).
      if (layout === 'image') await checkImage(image);
      const target = computerPaths(this.dataDir, this.id);
      if (fs.existsSync(target.dir)) throw new DriverError('FAILED', `computer ${this.id} already has a disk on this host`);
      const staged = path.join(computersDir(this.dataDir), `.${this.id}.tmp-${randomBytes(4).toString('hex')}`);
      fs.mkdirSync(staged, { recursive: true, mode: 0o700 });
      try {
        fs.mkdirSync(path.join(staged, 'run'));
        fs.writeFileSync(path.join(staged, 'meta.json'), JSON.stringify(meta, null, 2) + '\n');
        // The old layout's upper dir belongs in the computer's dir (mv copies it across file systems).
        if (layout === 'legacy') await runCommand('mv', [legacy, path.join(staged, 'upper')]);
        else fs.renameSync(image, target.image);
        fs.renameSync(staged, target.dir);
      } catch (err) {
        fs.rmSync(staged, { recursive: true, force: true });
        if (layout === 'image') fs.rmSync(target.image, { force: true });
        throw err;
      }
      fs.rmSync(this.tmp, { recursive: true, force: true });
    } catch (err) {
      await this.abort();
      throw err instanceof DriverError ? err : new DriverError('FAILED', `placing the disk failed: ${(err as Error).message}`);
    }
  }

  abort(): Promise<void> {
    return this.tar.abort();
  }

  /** The archive's meta, for this computer, on this host's copy of the template it was made on. */
  private checkedMeta(): ComputerMeta {
    const meta = archivedMeta(this.tmp, ArchivedMeta, this.id);
    return { ...meta, template_dir: localTemplate(this.dataDir, meta.template_dir) };
  }
}

async function checkImage(image: string): Promise<void> {
  const code = await new Promise<number>((resolve) => {
    const child = spawn('e2fsck', ['-f', '-p', image], { stdio: 'ignore' });
    child.on('error', () => resolve(8));
    child.on('close', (c) => resolve(c ?? 8));
  });
  if (code >= 4) throw new DriverError('FAILED', `the disk archive's image is not a sound ext4 file system (e2fsck exit ${code})`);
}
