/**
 * The guest agent's own runtime: a Python interpreter, its standard library,
 * the shared libraries they need and their own dynamic loader, taken from a
 * template root once, plus the guest's code compiled beside it. Inside a
 * computer it sits on a read-only mount, so nothing a user installs or removes
 * there (`apt-get remove python3`, deleting /usr/lib/python3*) reaches the
 * guest. Driver-neutral: a directory that any driver can put into a computer
 * (the sandbox driver bind-mounts it; a VM driver can copy it into an image),
 * described by runtime.json.
 *
 *   <template dir>.runtime-<v>/        the interpreter part, built once per template
 *       bin/python3.N, bin/setpriv, bin/setsid
 *       lib/ld-linux-*.so.*, lib/*.so*  every library those need, with their loader
 *       lib/python3.N/                  the standard library (tests, IDLE, tkinter left out)
 *   <template dir>.guest-<code hash>/  that, hard-linked, plus guest/ and launcher/ (compiled);
 *                                      a new one whenever the code changes
 *
 * Programs run as `<root>/lib/<loader> --library-path <root>/lib <root>/bin/<program>`:
 * the loader path is explicit, so the template's loader and libraries serve
 * them on any x86_64 host and inside any computer, and nothing of that leaks to
 * their children (no LD_LIBRARY_PATH in the environment).
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DriverError, type ProgressFn } from '../drivers/driver.ts';
import { runCommand } from '../drivers/sandbox/run-command.ts';

/** Bump when the interpreter part is built differently: templates get a new one. */
const RUNTIME_VERSION = 1;
/** Where the runtime is mounted inside a computer. */
export const RUNTIME_MOUNT = '/run/hangar-guest';

const GUEST_CODE = fileURLToPath(new URL('.', import.meta.url));
const LAUNCHER_CODE = fileURLToPath(new URL('../drivers/sandbox/launcher/', import.meta.url));
/** Programs from the template the guest runs itself (switching user, making a terminal the controlling one). */
const TOOLS = ['setpriv', 'setsid'];
/** Parts of the standard library no guest needs. */
const STDLIB_SKIP = new Set(['test', 'idlelib', 'tkinter', 'turtledemo', 'lib2to3', 'ensurepip', 'pydoc_data', 'site-packages', 'dist-packages', 'venv']);
const LIB_DIRS = ['lib/x86_64-linux-gnu', 'usr/lib/x86_64-linux-gnu', 'lib64', 'usr/lib64', 'lib', 'usr/lib'];

export interface RuntimeManifest {
  /** Relative to the runtime root. */
  loader: string;
  libraryPath: string;
  python: string;
  tools: Record<string, string>;
  guest: string;
  launcher: string;
}

export class GuestRuntime {
  readonly dir: string;
  readonly manifest: RuntimeManifest;

  constructor(dir: string, manifest: RuntimeManifest) {
    this.dir = dir;
    this.manifest = manifest;
  }

  /** argv that runs `program` (a path in the runtime) with the runtime's loader, the runtime seen at `root`. */
  programArgv(program: string, root = this.dir): string[] {
    const m = this.manifest;
    return [path.join(root, m.loader), '--library-path', path.join(root, m.libraryPath), path.join(root, program)];
  }

  /** The guest agent's command, the runtime seen at `root`; its channel's arguments follow. */
  guestCommand(root: string): string[] {
    return [...this.programArgv(this.manifest.python, root), '-I', '-S', path.join(root, this.manifest.guest)];
  }

  /** The guest agent, as a sandbox's pid 1 starts it (paths as the computer sees them). */
  guestArgv(socket: string): string[] {
    return [...this.guestCommand(RUNTIME_MOUNT), '--listen', socket];
  }

  /** The sandbox launcher, run on the host. */
  launcherArgv(): string[] {
    return [...this.programArgv(this.manifest.python), '-I', '-S', path.join(this.dir, this.manifest.launcher)];
  }
}

const building = new Map<string, Promise<GuestRuntime>>();

/** The runtime for computers on `templateDir` with the current guest code, building what is missing. */
export function ensureGuestRuntime(templateDir: string, onProgress: ProgressFn): Promise<GuestRuntime> {
  const dir = `${templateDir}.guest-${codeHash()}`;
  const ready = readRuntime(dir);
  if (ready) return Promise.resolve(ready);
  let build = building.get(dir);
  if (!build) {
    removeAbandonedBuilds(templateDir);
    build = (async () => {
      const base = await ensureBase(templateDir, onProgress);
      return buildBundle(base, dir);
    })().finally(() => building.delete(dir));
    building.set(dir, build);
  }
  return build;
}

function readRuntime(dir: string): GuestRuntime | null {
  try {
    return new GuestRuntime(dir, JSON.parse(fs.readFileSync(path.join(dir, 'runtime.json'), 'utf8')) as RuntimeManifest);
  } catch {
    return null;
  }
}

/** The interpreter part for a template: built into a temp dir, renamed into place (another agent may race us: either wins). */
async function ensureBase(templateDir: string, onProgress: ProgressFn): Promise<string> {
  const dir = `${templateDir}.runtime-${RUNTIME_VERSION}`;
  if (fs.existsSync(path.join(dir, 'runtime.json'))) return dir;
  onProgress({ phase: 'template', message: 'building the guest runtime (its own Python, libraries and loader)', fraction: 0.95 });
  const tmp = `${dir}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    const manifest = await buildBase(templateDir, tmp);
    fs.writeFileSync(path.join(tmp, 'runtime.json'), JSON.stringify(manifest, null, 2) + '\n');
    renameOrTakeTheirs(tmp, dir);
    onProgress({ phase: 'template', message: 'guest runtime ready', fraction: 0.99 });
    return dir;
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err instanceof DriverError ? err : new DriverError('FAILED', `building the guest runtime failed: ${(err as Error).message}`);
  }
}

async function buildBase(root: string, out: string): Promise<RuntimeManifest> {
  fs.mkdirSync(path.join(out, 'bin'), { recursive: true });
  fs.mkdirSync(path.join(out, 'lib'));
  const python = insideRoot(root, '/usr/bin/python3');
  const pyName = path.basename(python); // python3.11
  if (!/^python3\.\d+$/.test(pyName)) throw new DriverError('FAILED', `the template's python3 is ${pyName}, not python3.N`);
  fs.copyFileSync(path.join(root, python), path.join(out, 'bin', pyName));
  fs.chmodSync(path.join(out, 'bin', pyName), 0o755);
  const tools: Record<string, string> = {};
  for (const tool of TOOLS) {
    const found = insideRoot(root, `/usr/bin/${tool}`);
    fs.copyFileSync(path.join(root, found), path.join(out, 'bin', tool));
    fs.chmodSync(path.join(out, 'bin', tool), 0o755);
    tools[tool] = `bin/${tool}`;
  }

  const stdlib = path.join(root, 'usr/lib', pyName);
  const stdOut = path.join(out, 'lib', pyName);
  fs.mkdirSync(stdOut);
  for (const entry of fs.readdirSync(stdlib)) {
    if (STDLIB_SKIP.has(entry) || entry.startsWith('config-')) continue;
    await runCommand('cp', ['-a', path.join(stdlib, entry), stdOut]);
  }
  const dynload = path.join(stdOut, 'lib-dynload');
  for (const mod of fs.readdirSync(dynload)) {
    if (/^(_test|_xx|xx|_ctypes_test)/.test(mod)) fs.rmSync(path.join(dynload, mod));
  }

  // Every shared library of the interpreter, its extension modules and the tools, resolved by
  // the template's own loader against the template's library dirs only.
  const loader = insideRoot(root, '/lib64/ld-linux-x86-64.so.2');
  const loaderName = path.basename(loader);
  fs.copyFileSync(path.join(root, loader), path.join(out, 'lib', loaderName));
  fs.chmodSync(path.join(out, 'lib', loaderName), 0o755);
  const libPath = LIB_DIRS.map((d) => path.join(root, d)).filter((d) => fs.existsSync(d)).join(':');
  const elves = [path.join(root, python), ...TOOLS.map((t) => path.join(root, insideRoot(root, `/usr/bin/${t}`))), ...fs.readdirSync(dynload).filter((m) => m.endsWith('.so')).map((m) => path.join(dynload, m))];
  const libs = new Map<string, string>();
  for (const elf of elves) {
    const listing = await runCommand(path.join(root, loader), ['--library-path', libPath, '--list', elf]);
    for (const line of listing.split('\n')) {
      const m = /^\s*(\S+) => (\S+)/.exec(line);
      if (!m || m[1] === loaderName || m[2].includes('ld-linux')) continue;
      if (!m[2].startsWith(root + '/')) throw new DriverError('FAILED', `the template lacks ${m[1]} (needed by ${path.basename(elf)})`);
      libs.set(m[1], m[2]);
    }
  }
  for (const [name, file] of libs) fs.copyFileSync(fs.realpathSync(file), path.join(out, 'lib', name));
  return {
    loader: `lib/${loaderName}`,
    libraryPath: 'lib',
    python: `bin/${pyName}`,
    tools,
    guest: 'guest',
    launcher: 'launcher',
  };
}

/** The base hard-linked, plus the guest's and the launcher's code, compiled with the runtime's own interpreter. */
async function buildBundle(base: string, dir: string): Promise<GuestRuntime> {
  const tmp = `${dir}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await runCommand('cp', ['-al', base, tmp]);
    copyPython(GUEST_CODE, path.join(tmp, 'guest'));
    copyPython(LAUNCHER_CODE, path.join(tmp, 'launcher'));
    const manifest = JSON.parse(fs.readFileSync(path.join(tmp, 'runtime.json'), 'utf8')) as RuntimeManifest;
    const runtime = new GuestRuntime(tmp, manifest);
    const [cmd, ...args] = runtime.programArgv(manifest.python);
    await runCommand(cmd, [...args, '-I', '-S', '-m', 'compileall', '-q', path.join(tmp, 'guest'), path.join(tmp, 'launcher')]);
    renameOrTakeTheirs(tmp, dir);
    return new GuestRuntime(dir, manifest);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err instanceof DriverError ? err : new DriverError('FAILED', `building the guest runtime failed: ${(err as Error).message}`);
  }
}

/** Copies the .py files of a source tree (not tests, not bytecode, not TypeScript). */
function copyPython(from: string, to: string): void {
  fs.mkdirSync(to, { recursive: true });
  for (const entry of fs.readdirSync(from, { withFileTypes: true })) {
    if (entry.isDirectory() && entry.name !== '__pycache__') copyPython(path.join(from, entry.name), path.join(to, entry.name));
    else if (entry.isFile() && entry.name.endsWith('.py')) fs.copyFileSync(path.join(from, entry.name), path.join(to, entry.name));
  }
}

/** The guest code does not change while the agent runs: hashed once, not at every computer's start. */
let hashOfCode: string | null = null;

/** A hash of the code that goes into a bundle, so a change of it makes a new bundle. */
function codeHash(): string {
  hashOfCode ??= hashCode();
  return hashOfCode;
}

function hashCode(): string {
  const h = createHash('sha256').update(`runtime ${RUNTIME_VERSION}\n`);
  const walk = (dir: string, rel: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      if (entry.isDirectory() && entry.name !== '__pycache__') walk(path.join(dir, entry.name), `${rel}/${entry.name}`);
      else if (entry.isFile() && entry.name.endsWith('.py')) h.update(`${rel}/${entry.name}\n`).update(fs.readFileSync(path.join(dir, entry.name)));
    }
  };
  walk(GUEST_CODE, 'guest');
  walk(LAUNCHER_CODE, 'launcher');
  return h.digest('hex').slice(0, 16);
}

/** Resolves `p` (absolute, inside `root`) following symlinks as the root would, without leaving it. */
function insideRoot(root: string, p: string): string {
  let current = '/';
  const parts = p.split('/').filter(Boolean);
  for (let hops = 0; parts.length > 0; ) {
    const part = parts.shift()!;
    const next = path.posix.join(current, part);
    const st = fs.lstatSync(path.join(root, next), { throwIfNoEntry: false });
    if (!st) throw new DriverError('FAILED', `the template has no ${p}`);
    if (st.isSymbolicLink()) {
      if (++hops > 40) throw new DriverError('FAILED', `too many symlinks resolving ${p} in the template`);
      const target = fs.readlinkSync(path.join(root, next));
      parts.unshift(...target.split('/').filter(Boolean));
      current = target.startsWith('/') ? '/' : current;
    } else {
      current = next;
    }
  }
  return current;
}

/** Temp dirs of runtime builds whose agent died (its pid is in the name). */
function removeAbandonedBuilds(templateDir: string): void {
  const parent = path.dirname(templateDir);
  const prefix = `${path.basename(templateDir)}.`;
  for (const name of fs.readdirSync(parent)) {
    const m = /\.tmp-(\d+)-[0-9a-f]+$/.exec(name);
    if (!name.startsWith(prefix) || !m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || fs.existsSync(`/proc/${pid}`)) continue;
    fs.rmSync(path.join(parent, name), { recursive: true, force: true });
  }
}

function renameOrTakeTheirs(tmp: string, dir: string): void {
  try {
    fs.renameSync(tmp, dir);
  } catch (err) {
    if (!fs.existsSync(path.join(dir, 'runtime.json'))) throw err;
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
