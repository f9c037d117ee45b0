/**
 * Template roots: an immutable Debian root per recipe, shared read-only by
 * every computer as its overlay lower dir. The directory is named by a hash of
 * the recipe (packages, mirror, the host files baked in, the setup steps), so
 * changing any of them builds a new template while existing computers keep the
 * one they were made from. A build goes into a temp dir renamed into place, so
 * an interrupted build never leaves a half template behind.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { DriverError, type ProgressFn } from '../driver.ts';
import { aptConfigFiles, hostDebianMirror, hostPipSetup } from './host-config.ts';
import { templatesDir } from './paths.ts';
import { runCommand } from './run-command.ts';
import { desktopRecipe, installDesktop, type DesktopRecipe } from './template-desktop.ts';

export const TEMPLATE_NAME = 'miosa-desktop';

const PACKAGES = [
  'python3', 'python3-pip', 'python3-venv', 'curl', 'wget', 'git', 'vim', 'jq', 'htop', 'tree', 'zip', 'unzip',
  'sudo', 'ca-certificates', 'procps', 'iproute2', 'less', 'locales', 'bash-completion',
];

/**
 * Steps run inside the new root after debootstrap. Changing this text changes
 * the recipe hash, so templates rebuild. pip may install for `user` because
 * the EXTERNALLY-MANAGED marker is removed (a computer is the user's own machine).
 */
const SETUP_SCRIPT = `set -eu
echo 'LANG=C.UTF-8' > /etc/default/locale
useradd --create-home --uid 1000 --user-group --groups sudo --shell /bin/bash user
echo 'user ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/hangar-user
chmod 0440 /etc/sudoers.d/hangar-user
mkdir -p /workspace
chown user:user /workspace
rm -f /usr/lib/python3*/EXTERNALLY-MANAGED
apt-get update
apt-get clean
rm -rf /tmp/* /var/tmp/*
`;

export interface TemplateRecipe {
  name: string;
  suite: string;
  variant: string;
  mirror: string;
  packages: string[];
  setup: string;
  /** Host files copied in, by path, with a hash of their content. */
  hostFiles: Record<string, string>;
  pipConf: string;
  /** Files the pip configuration names, by path, with a hash of their content: copied in where the root lacks them. */
  pipFiles: Record<string, string>;
  /** The desktop installed after the base setup (template-desktop.ts). */
  desktop: DesktopRecipe;
}

/** The recipe of the miosa-desktop template on this host. */
export function miosaDesktopRecipe(): TemplateRecipe {
  const hostFiles: Record<string, string> = {};
  for (const file of aptConfigFiles()) hostFiles[file] = sha256(fs.readFileSync(file));
  const pip = hostPipSetup();
  const pipFiles: Record<string, string> = {};
  for (const file of pip.files) pipFiles[file] = sha256(fs.readFileSync(file));
  return {
    name: TEMPLATE_NAME,
    suite: 'bookworm',
    variant: 'minbase',
    mirror: hostDebianMirror(),
    packages: PACKAGES,
    setup: SETUP_SCRIPT,
    hostFiles,
    pipConf: pip.conf,
    pipFiles,
    desktop: desktopRecipe(),
  };
}

export function recipeHash(recipe: TemplateRecipe): string {
  return sha256(JSON.stringify(recipe)).slice(0, 16);
}

export class TemplateStore {
  private readonly dataDir: string;
  private building = new Map<string, Promise<string>>();

  constructor(dataDir: string) {
    this.dataDir = dataDir;
  }

  /** Directory of the template root for `name`, building it first if this recipe has none yet. */
  ensure(name: string, onProgress: ProgressFn): Promise<string> {
    if (name !== TEMPLATE_NAME) throw new DriverError('BAD_REQUEST', `unknown template ${JSON.stringify(name)}`);
    const recipe = miosaDesktopRecipe();
    const hash = recipeHash(recipe);
    const dir = path.join(templatesDir(this.dataDir), `${name}-${hash}`);
    if (fs.existsSync(path.join(dir, 'etc/hangar-template.json'))) return Promise.resolve(dir);
    let build = this.building.get(dir);
    if (!build) {
      build = this.build(recipe, hash, dir, onProgress).finally(() => this.building.delete(dir));
      this.building.set(dir, build);
    }
    return build;
  }

  private async build(recipe: TemplateRecipe, hash: string, dir: string, onProgress: ProgressFn): Promise<string> {
    const root = templatesDir(this.dataDir);
    fs.mkdirSync(root, { recursive: true });
    removeAbandonedBuilds(root);
    const tmp = path.join(root, `.build-${hash}-${process.pid}-${randomBytes(4).toString('hex')}`);
    const started = Date.now();
    onProgress({ phase: 'template', message: `building template ${recipe.name} (${hash}) from ${recipe.mirror}`, fraction: 0 });
    try {
      const progress = debootstrapProgress(onProgress);
      await runCommand(
        'debootstrap',
        [`--variant=${recipe.variant}`, `--include=${recipe.packages.join(',')}`, recipe.suite, tmp, recipe.mirror],
        { onLine: progress, env: { ...process.env, LANG: 'C.UTF-8', DEBIAN_FRONTEND: 'noninteractive' } },
      );
      onProgress({ phase: 'template', message: 'copying the host apt and pip configuration', fraction: 0.86 });
      // The host's sources replace debootstrap's one-line sources.list.
      fs.rmSync(path.join(tmp, 'etc/apt/sources.list'), { force: true });
      for (const file of Object.keys(recipe.hostFiles)) copyInto(tmp, file);
      if (recipe.pipConf) fs.writeFileSync(path.join(tmp, 'etc/pip.conf'), recipe.pipConf);
      // A file of the root's own (say the CA bundle of ca-certificates) stays the root's.
      for (const file of Object.keys(recipe.pipFiles)) if (!fs.existsSync(path.join(tmp, file))) copyInto(tmp, file);
      fs.copyFileSync('/etc/resolv.conf', path.join(tmp, 'etc/resolv.conf')); // for apt-get update below
      onProgress({ phase: 'template', message: 'creating the user account and apt lists', fraction: 0.9 });
      await runInRoot(tmp, recipe.setup, (line) => onProgress({ phase: 'template', message: line, fraction: 0.92 }));
      await installDesktop((script, onLine) => runInRoot(tmp, script, onLine), recipe.desktop, onProgress, 0.92, 0.99);
      fs.writeFileSync(
        path.join(tmp, 'etc/hangar-template.json'),
        JSON.stringify({ name: recipe.name, hash, built_at: new Date().toISOString() }) + '\n',
      );
      try {
        fs.renameSync(tmp, dir);
      } catch (err) {
        // Another agent finished the same recipe first: theirs is as good as ours.
        if (!fs.existsSync(path.join(dir, 'etc/hangar-template.json'))) throw err;
        fs.rmSync(tmp, { recursive: true, force: true });
      }
      const secs = Math.round((Date.now() - started) / 1000);
      onProgress({ phase: 'template', message: `template ${recipe.name} ready in ${secs} s`, fraction: 1 });
      return dir;
    } catch (err) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw err instanceof DriverError ? err : new DriverError('FAILED', `template build failed: ${String(err)}`);
    }
  }
}

/** Runs a shell script chrooted in `root`, with /proc mounted in a private mount namespace that dies with it. */
function runInRoot(root: string, script: string, onLine: (line: string) => void): Promise<string> {
  const wrapper = 'mount -t proc proc "$1/proc" && exec chroot "$1" /bin/sh -c "$2"';
  return runCommand('unshare', ['--mount', '--pid', '--fork', '--propagation', 'private', '--', '/bin/sh', '-c', wrapper, 'sh', root, script], {
    onLine,
    env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', DEBIAN_FRONTEND: 'noninteractive', HOME: '/root' },
  });
}

function copyInto(root: string, file: string): void {
  const target = path.join(root, file);
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.copyFileSync(file, target);
}

/** Maps debootstrap's "I: ..." lines onto a rough 0..0.85 fraction. */
function debootstrapProgress(onProgress: ProgressFn): (line: string) => void {
  let retrieved = 0;
  let fraction = 0;
  const stages: Array<[RegExp, number]> = [
    [/^I: Retrieving (InRelease|Release|Packages)/, 0.02],
    [/^I: Resolving dependencies/, 0.05],
    [/^I: Extracting/, 0.45],
    [/^I: Installing core packages/, 0.5],
    [/^I: Unpacking required packages/, 0.55],
    [/^I: Configuring required packages/, 0.62],
    [/^I: Unpacking the base system/, 0.68],
    [/^I: Configuring the base system/, 0.75],
    [/^I: Base system installed successfully/, 0.85],
  ];
  return (line) => {
    if (/^I: Retrieving \S+ \S/.test(line) && !/InRelease|Packages|Release/.test(line)) {
      retrieved++;
      fraction = Math.max(fraction, 0.08 + 0.35 * Math.min(1, retrieved / 200));
    }
    for (const [re, f] of stages) if (re.test(line)) fraction = Math.max(fraction, f);
    onProgress({ phase: 'template', message: line.replace(/^I: /, ''), fraction: Math.round(fraction * 100) / 100 });
  };
}

/** Deletes build dirs left by agents that died mid-build (their pid is in the name). */
function removeAbandonedBuilds(root: string): void {
  for (const name of fs.readdirSync(root)) {
    const m = /^\.build-[0-9a-f]+-(\d+)-/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || fs.existsSync(`/proc/${pid}`)) continue;
    fs.rmSync(path.join(root, name), { recursive: true, force: true });
  }
}

function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
