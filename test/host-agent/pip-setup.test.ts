import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hostPipSetup, pipMirrorDirs } from '../../host-agent/drivers/sandbox/host-config.ts';
import { miosaDesktopRecipe } from '../../host-agent/drivers/sandbox/template.ts';

// A pip configuration of its own, in a temp dir: nothing here depends on this machine's pip setup.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hangar-pip-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const file = path.join(dir, name);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
  return file;
}

describe("computers' pip configuration", () => {
  it('keeps the files the host configuration names, to bake into the template, and drops settings naming files the host lacks', () => {
    const constraints = write('etc/constraints.txt', 'torch<=2.0\n');
    const bundle = write('etc/corp-ca.pem', '-----BEGIN CERTIFICATE-----\n');
    const mirror = path.join(dir, 'mirror');
    fs.mkdirSync(path.join(mirror, 'simple'), { recursive: true });
    const site = write(
      'site/pip.conf',
      `[global]\nconstraint = ${constraints}\ncert = ${bundle}\nextra-index-url = file://${mirror}/simple\n[install]\nrequirement = ${dir}/nowhere/reqs.txt\n`,
    );
    const user = write('user/pip.conf', `[global]\nclient-cert = ${dir}/missing.pem\n`);

    const setup = hostPipSetup({}, [site, user, path.join(dir, 'absent.conf')]);
    expect(setup.files).toEqual([bundle, constraints].sort());
    expect(setup.conf).toContain(`constraint = ${constraints}`);
    expect(setup.conf).toContain(`cert = ${bundle}`);
    expect(setup.conf).not.toContain('client-cert');
    expect(setup.conf).not.toContain('requirement');
    // The local index is a directory: shared read-only, not baked in.
    expect(pipMirrorDirs({}, [site])).toEqual([mirror]);
  });

  it("puts every named file into the template recipe, so a changed constraint file builds a new template", () => {
    const recipe = miosaDesktopRecipe();
    expect(Object.keys(recipe.pipFiles).sort()).toEqual(hostPipSetup().files);
  });
});
