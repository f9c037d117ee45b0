/**
 * Every route of the API that takes a body, with the shape of that body as
 * the fuzz cases need it (worker/routes/*.ts, schema/api*.ts). Paths name the
 * fixtures of fuzz.test.ts: {id} a running computer, {org} an organization.
 */
import { APPS, COMPUTER_VISIBILITIES, EXEC_MAX_COMMAND_BYTES, PORT_VISIBILITY_NAMES, TEMPLATES } from '../../schema/api.ts';
import { SIZE_NAMES } from '../../schema/sizes.ts';
import { TUNNEL_AUTH_MODES } from '../../schema/tunnels.ts';
import { ISOLATIONS } from '../../schema/isolation.ts';
import { SESSION_LIMITS, TOOL_NAMES } from '../../schema/api-agents.ts';
import type { BodyShape, Field } from './fuzz-cases.ts';

export interface FuzzRoute {
  method: 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  path: string;
  auth: 'tenant' | 'operator' | 'none';
  shape: BodyShape;
  /** At most this many cases (a seeded sample), for rate-limited routes. */
  limit?: number;
  /** The route's JSON body limit when it is not the API's 1 MiB. */
  bodyLimit?: number;
}

/** Display names: besides lengths, characters that hide what is shown (schema/text.ts). */
const name: Field = { spec: { type: 'string', min: 1, max: 128, trim: true, bad: ['a\u0000b', 'bell\u0007', 'new\nline', 'evil\u202Etxt.exe', 'iso\u2066', 'half\ud800'] } };
const opt = (f: Field): Field => ({ ...f, optional: true });
const str = (min: number, max: number): Field => ({ spec: { type: 'string', min, max } });
const int = (min: number, max?: number): Field => ({ spec: { type: 'int', min, max } });
const uuid: Field = { spec: { type: 'uuid' } };
const oneOf = (values: readonly string[]): Field => ({ spec: { type: 'enum', values } });

/** Tenant slugs: letters, digits, ".", "_", "-", starting with a letter or digit, 1-64. */
const slug: Field = { spec: { type: 'string', max: 64, bad: ['', '-lead', '.lead', 'has space', 'a/b', 'a\u0000', '😀', 'ä'] } };
const MAX_AUTO_STOP = 30 * 86_400;
const timeout = opt(int(1));

/** The desktop control API (schema/desktop.ts): coordinates are checked against the screen too, so "valid" bodies point inside it. */
function desktopRoutes(): FuzzRoute[] {
  const coord = int(0, 16_383);
  const point = { x: coord, y: coord };
  const optPoint = { x: opt(coord), y: opt(coord) };
  const button = opt(oneOf(['left', 'right', 'middle']));
  const d = (path: string, valid: Record<string, unknown>, fields: Record<string, Field>, emptyInvalid = false): FuzzRoute => ({
    method: 'POST',
    path: `/computers/{id}/desktop/${path}`,
    auth: 'tenant',
    shape: { valid, fields, ...(emptyInvalid ? { emptyInvalid } : {}) },
  });
  return [
    d('screenshot-region', { x: 0, y: 0, width: 10, height: 10 }, { ...point, width: int(1, 16_384), height: int(1, 16_384), format: opt(oneOf(['png', 'base64', 'json'])) }),
    d('click', { x: 5, y: 5 }, { ...optPoint, button, clicks: opt(int(1, 3)) }),
    d('double-click', { x: 5, y: 5 }, { ...optPoint, button }),
    d('right-click', { x: 5, y: 5 }, optPoint),
    d('move', { x: 5, y: 5 }, point),
    d('mouse-down', { x: 5, y: 5 }, { ...optPoint, button }),
    d('mouse-up', { x: 5, y: 5 }, { ...optPoint, button }),
    d('drag', { start_x: 1, start_y: 1, end_x: 2, end_y: 2 }, { start_x: opt(coord), start_y: opt(coord), end_x: opt(coord), end_y: opt(coord), from_x: opt(coord), to_y: opt(coord), button }, true),
    d('scroll', { x: 5, y: 5, direction: 'down' }, { ...optPoint, direction: opt(oneOf(['up', 'down', 'left', 'right'])), amount: opt(int(1, 100)), clicks: opt(int(1, 100)) }),
    d('type', { text: 'x' }, { text: str(1, 100_000), delay: opt(int(0, 1000)), delay_ms: opt(int(0, 1000)) }),
    d('key', { key: 'Escape' }, { key: opt(str(1, 256)) }, true),
    d('key-down', { key: 'shift' }, { key: str(1, 256) }),
    d('key-up', { key: 'shift' }, { key: str(1, 256) }),
    d('wait', { seconds: 0 }, { seconds: opt({ spec: { type: 'number', min: 0, max: 120 } }), ms: opt(int(0, 120_000)) }, true),
    d('window/focus', { window_id: '1' }, { window_id: str(1, 16) }),
    d('launch', { app: 'terminal' }, { app: opt(str(1, 8192)), app_name: opt(str(1, 8192)), command: opt(str(1, 8192)) }, true),
  ];
}
const envName: Field = { spec: { type: 'string', min: 1, max: 256, bad: ['1ABC', 'A-B', 'A B', 'A=B', 'É', 'A\u0000', '😀'] } };
const secretValue: Field = { spec: { type: 'string', max: 32 * 1024, noNul: true } };
const description: Field = { ...opt(str(0, 1024)), nullable: true };
const hostRegion: Field = { spec: { type: 'string', max: 63, bad: ['', 'UPPER', '-a', 'a_b', 'a b', 'ä', 'a\u0000'] } };
const termSize = opt(int(1, 1000));
/** Tunnel slugs: one lower-case DNS label. */
const tunnelSlug: Field = { spec: { type: 'string', max: 63, bad: ['', 'Upper', '-lead', 'trail-', 'a.b', 'a_b', 'has space', 'ä', 'a\u0000'] } };
/** Tunnel passwords: 8 to 1024 characters. */
const tunnelPassword: Field = { spec: { type: 'string', min: 8, max: 1024 } };

/** OpenComputers (spec/05): tenant hosts, jobs, terminal tickets, secrets. */
const OPENCOMPUTERS_ROUTES: FuzzRoute[] = [
  {
    method: 'POST',
    path: '/opencomputers/hosts',
    auth: 'tenant',
    shape: { valid: { name: 'fuzz-box' }, fields: { name, region: opt(hostRegion), labels: opt({ spec: { type: 'labels' } }) } },
  },
  {
    method: 'PATCH',
    path: '/opencomputers/hosts/{host}',
    auth: 'tenant',
    shape: { valid: { name: 'renamed' }, fields: { name: opt(name), region: opt(hostRegion), labels: opt({ spec: { type: 'labels' } }) }, emptyInvalid: true },
  },
  {
    method: 'POST',
    path: '/opencomputers/hosts/{host}/exec',
    auth: 'tenant',
    shape: {
      valid: { command: 'touch /tmp/fuzz-ran' },
      fields: {
        command: { spec: { type: 'string', min: 1, max: EXEC_MAX_COMMAND_BYTES, bytes: true, noNul: true } },
        args: opt({ spec: { type: 'array', of: 'string', max: 4096, badItems: ['a\u0000b', 1, null, {}] } }),
        env: opt({ spec: { type: 'array', of: 'string', max: 1024, badItems: ['no equals sign', '=x', '1A=b', 'A B=c', 'A=b\u0000', 2] } }),
        cwd: opt({ spec: { type: 'string', min: 1, max: 4096, noNul: true } }),
        timeout,
        wait: opt({ spec: { type: 'bool' } }),
      },
    },
  },
  {
    method: 'POST',
    path: '/opencomputers/hosts/{host}/terminal/ticket',
    auth: 'tenant',
    shape: {
      valid: { cols: 80 },
      fields: { session_id: opt({ spec: { type: 'string', max: 32, bad: ['', 'NOT A SESSION', 'ABCDEF', 'a-b', 'a\u0000'] } }), cols: termSize, rows: termSize },
    },
  },
  {
    method: 'POST',
    path: '/opencomputers/hosts/{host}/desktop/ticket',
    auth: 'tenant',
    shape: { valid: { port: 5900 }, fields: { port: opt(int(1, 65535)) } },
  },
  {
    method: 'POST',
    path: '/opencomputers/hosts/{host}/fs/mkdir',
    auth: 'tenant',
    shape: { valid: { path: 'fuzz-dir' }, fields: { path: { spec: { type: 'string', min: 1, max: 4096, noNul: true } } } },
  },
  {
    method: 'POST',
    path: '/opencomputers/hosts/{host}/tunnels',
    auth: 'tenant',
    shape: {
      valid: { target_port: 3000 },
      fields: {
        target_port: int(1, 65535),
        auth_mode: opt(oneOf(TUNNEL_AUTH_MODES)),
        slug: opt(tunnelSlug),
        password: opt(tunnelPassword),
        enabled: opt({ spec: { type: 'bool' } }),
      },
    },
  },
  {
    method: 'PATCH',
    path: '/opencomputers/hosts/{host}/tunnels/{tunnel}',
    auth: 'tenant',
    shape: {
      valid: { enabled: true },
      fields: { target_port: opt(int(1, 65535)), auth_mode: opt(oneOf(TUNNEL_AUTH_MODES)), password: opt(tunnelPassword), enabled: opt({ spec: { type: 'bool' } }) },
      emptyInvalid: true,
    },
  },
  {
    method: 'POST',
    path: '/opencomputers/hosts/{host}/tunnels/{tunnel}/link',
    auth: 'tenant',
    shape: {
      valid: { path: '/dashboard' },
      fields: { path: opt({ spec: { type: 'string', max: 2048, bad: ['dashboard', '//evil.example', '/\\evil', '/has space', 'https://evil.example/'] } }) },
    },
  },
  {
    method: 'POST',
    path: '/opencomputers/clusters',
    auth: 'tenant',
    shape: {
      // An unknown host: a case the schema let through would be a 404, not the 400 every case must get.
      valid: { name: 'fuzz-cluster', model: 'hangar-tiny', host_ids: ['00000000-0000-4000-8000-000000000000'] },
      fields: {
        name,
        model: { spec: { type: 'string', min: 1, max: 128, bad: ['-lead', 'has space', 'a..b', 'a\u0000', '😀', 'ä', 'a?b'] } },
        host_ids: { spec: { type: 'array', of: 'uuid', min: 1, max: 64 } },
        slug: opt({ spec: { type: 'string', min: 1, max: 63, bad: ['', 'UPPER', '-a', 'a-', 'a_b', 'a b', 'ä', 'a\u0000'] } }),
      },
    },
  },
  {
    method: 'POST',
    path: '/opencomputers/hosts/{host}/agent/dispatch',
    auth: 'tenant',
    shape: {
      // The fuzz host has no model configured: a case the schema let through would be a 422, not the 400 every case must get.
      valid: { task: 'fuzz task' },
      fields: {
        task: { spec: { type: 'string', min: 1, max: SESSION_LIMITS.task_chars, trim: true } },
        model_id: opt({ spec: { type: 'string', min: 1, max: 256, trim: true } }),
        model: opt({ spec: { type: 'string', min: 1, max: 256, trim: true } }),
        max_turns: opt(int(1, SESSION_LIMITS.max_turns.max)),
        tools: opt({ spec: { type: 'array', of: 'enum', values: TOOL_NAMES, max: TOOL_NAMES.length } }),
      },
    },
  },
  ...(['/opencomputers/secrets', '/opencomputers/hosts/{host}/secrets'] as const).flatMap((base): FuzzRoute[] => [
    { method: 'POST', path: base, auth: 'tenant', shape: { valid: { name: 'FUZZ_SECRET', value: 'x' }, fields: { name: envName, value: secretValue, description } } },
    {
      method: 'PATCH',
      path: `${base}/${base.includes('{host}') ? '{hsecret}' : '{tsecret}'}`,
      auth: 'tenant',
      shape: { valid: { value: 'changed' }, fields: { value: opt(secretValue), description }, emptyInvalid: true },
    },
  ]),
];

export const FUZZ_ROUTES: FuzzRoute[] = [
  ...OPENCOMPUTERS_ROUTES,
  {
    method: 'POST',
    path: '/computers',
    auth: 'tenant',
    shape: {
      valid: { name: 'fuzz', template_type: TEMPLATES[0] },
      fields: {
        name,
        template_type: oneOf(TEMPLATES),
        size: opt(oneOf(SIZE_NAMES)),
        selected_apps: opt({ spec: { type: 'array', of: 'enum', values: APPS, max: 16 } }),
        region: opt(str(1, 64)),
        auto_stop: opt(int(0, MAX_AUTO_STOP)),
        workspace_id: opt(uuid),
        workspace_slug: opt(str(1, 64)),
        workspace_name: opt(str(1, 128)),
        project_id: opt(uuid),
        project_slug: opt(str(1, 64)),
        project_name: opt(str(1, 128)),
        external_workspace_id: opt(str(0, 255)),
        external_user_id: opt(str(0, 255)),
        external_project_id: opt(str(0, 255)),
        metadata: opt({ spec: { type: 'labels' } }),
        visibility: opt(oneOf(COMPUTER_VISIBILITIES)),
        resolution: opt({ spec: { type: 'string', max: 9, bad: ['', '1280', '1280x', 'x720', '319x200', '3841x2160', '1280X720', ' 1280x720', '0x0', '01280x720', '1e3x720'] } }),
        isolation: opt(oneOf(ISOLATIONS)),
      },
    },
  },
  ...(['PATCH', 'PUT'] as const).map(
    (method): FuzzRoute => ({
      method,
      path: '/computers/{id}',
      auth: 'tenant',
      shape: {
        valid: { name: 'renamed' },
        fields: {
          agent_session_id: { ...opt(str(0, 255)), nullable: true },
          name: opt(name),
          metadata: opt({ spec: { type: 'labels' } }),
          visibility: opt(oneOf(COMPUTER_VISIBILITIES)),
        },
      },
    }),
  ),
  { method: 'POST', path: '/computers/{id}/clone', auth: 'tenant', shape: { valid: { name: 'clone' }, fields: { name: opt(name) } } },
  { method: 'POST', path: '/computers/{id}/resize', auth: 'tenant', shape: { valid: { size: 'medium' }, fields: { size: oneOf(SIZE_NAMES) } } },
  { method: 'POST', path: '/computers/{id}/stop', auth: 'tenant', shape: { valid: { keep_memory: false }, fields: { keep_memory: opt({ spec: { type: 'bool' } }) } } },
  { method: 'POST', path: '/computers/{id}/move', auth: 'tenant', shape: { valid: { region: 'local' }, fields: { region: str(1, 64) } } },
  {
    method: 'PATCH',
    path: '/computers/{id}/auto-stop',
    auth: 'tenant',
    shape: {
      valid: { auto_stop_seconds: 60 },
      fields: { auto_stop_seconds: { ...int(0, MAX_AUTO_STOP), nullable: true }, seconds: { ...opt(int(0, MAX_AUTO_STOP)), nullable: true } },
    },
  },
  {
    method: 'POST',
    path: '/computers/{id}/exec',
    auth: 'tenant',
    shape: { valid: { command: 'touch /tmp/fuzz-ran' }, fields: { command: { spec: { type: 'string', min: 1, max: EXEC_MAX_COMMAND_BYTES, bytes: true, noNul: true } }, timeout } },
  },
  {
    method: 'POST',
    path: '/computers/{id}/exec/python',
    auth: 'tenant',
    shape: { valid: { code: 'open("/tmp/fuzz-ran", "w")' }, fields: { code: { spec: { type: 'string', min: 1, max: 1024 * 1024, noNul: true } }, timeout } },
  },
  {
    method: 'POST',
    path: '/computers/{id}/env',
    auth: 'tenant',
    shape: {
      valid: { name: 'FUZZ_NEW', value: 'x' },
      fields: {
        name: { spec: { type: 'string', min: 1, max: 256, bad: ['1ABC', 'A-B', 'A B', 'A=B', 'É', 'A\u0000', '😀'] } },
        value: { spec: { type: 'string', max: 32 * 1024, noNul: true } },
      },
    },
  },
  {
    method: 'PATCH',
    path: '/computers/{id}/env/FUZZ_VAR',
    auth: 'tenant',
    shape: { valid: { value: 'changed' }, fields: { value: { spec: { type: 'string', max: 32 * 1024, noNul: true } } } },
  },
  {
    method: 'POST',
    path: '/computers/{id}/ports',
    auth: 'tenant',
    shape: {
      valid: { port: 8080, visibility: 'public' },
      fields: { port: int(1, 65535), visibility: opt(oneOf(PORT_VISIBILITY_NAMES)), wake_on_request: opt({ spec: { type: 'bool' } }) },
    },
  },
  {
    method: 'PATCH',
    path: '/computers/{id}/ports/3000',
    auth: 'tenant',
    shape: {
      valid: { visibility: 'private' },
      fields: { visibility: opt(oneOf(PORT_VISIBILITY_NAMES)), wake_on_request: opt({ spec: { type: 'bool' } }) },
      emptyInvalid: true,
    },
  },
  {
    method: 'POST',
    path: '/computers/{id}/ports/3000/link',
    auth: 'tenant',
    shape: {
      valid: { path: '/dashboard' },
      fields: { path: opt({ spec: { type: 'string', max: 2048, bad: ['dashboard', '//evil.example', '/\\evil', '/has space', 'https://evil.example/'] } }) },
    },
  },
  ...desktopRoutes(),
  ...fileRoutes(),
  ...snapshotRoutes(),
  { method: 'POST', path: '/workspaces', auth: 'tenant', shape: { valid: { name: 'fuzz-ws' }, fields: { name, slug: opt(slug) } } },
  {
    method: 'POST',
    path: '/projects',
    auth: 'tenant',
    shape: {
      valid: { name: 'fuzz-project' },
      fields: { name, slug: opt(slug), workspace_id: opt(uuid), workspace_slug: opt(slug), workspace_name: opt(name) },
    },
  },
  // 20 requests a minute per client address.
  {
    method: 'POST',
    path: '/auth/token',
    auth: 'none',
    limit: 18,
    shape: { valid: { api_key: 'msk_live_x' }, fields: { api_key: opt(str(1, 256)), ttl_seconds: opt(int(60, 3600)) } },
  },
  {
    method: 'POST',
    path: '/admin/organizations',
    auth: 'operator',
    shape: {
      valid: { name: 'fuzz-org', slug: 'fuzz-org-new' },
      fields: {
        name,
        slug: opt({ spec: { type: 'string', max: 64, bad: ['', 'A', '-a', 'a-', 'a_b', 'a b', 'ä', 'a\u0000'] } }),
        credits: opt({ spec: { type: 'number', min: 0, max: 1e12 } }),
        rate_limit_per_minute: { ...opt(int(1, 1_000_000)), nullable: true },
      },
    },
  },
  {
    method: 'PATCH',
    path: '/admin/organizations/{org}',
    auth: 'operator',
    shape: {
      valid: { name: 'renamed' },
      fields: { name: opt(name), rate_limit_per_minute: { ...opt(int(1, 1_000_000)), nullable: true } },
      emptyInvalid: true,
    },
  },
  {
    method: 'POST',
    path: '/admin/organizations/{org}/api-keys',
    auth: 'operator',
    shape: {
      valid: { name: 'fuzz-key' },
      fields: {
        name: opt(name),
        mode: opt(oneOf(['live', 'test'])),
        workspace_ids: { ...opt({ spec: { type: 'array', of: 'uuid', min: 1, max: 100 } }), nullable: true },
        project_ids: { ...opt({ spec: { type: 'array', of: 'uuid', min: 1, max: 100 } }), nullable: true },
      },
    },
  },
  {
    method: 'POST',
    path: '/admin/organizations/{org}/credits',
    auth: 'operator',
    shape: {
      valid: { amount: 5, reason: 'fuzz' },
      fields: { amount: { spec: { type: 'number', min: -1e12, max: 1e12, nonZero: true } }, reason: { spec: { type: 'string', min: 1, max: 500, trim: true } } },
    },
  },
  {
    method: 'POST',
    path: '/admin/hosts',
    auth: 'operator',
    shape: {
      valid: { name: 'fuzz-host', region: 'local' },
      fields: {
        name,
        region: { spec: { type: 'string', max: 63, bad: ['', 'UPPER', '-a', 'a_b', 'a b', 'ä', 'a\u0000'] } },
        labels: opt({ spec: { type: 'labels' } }),
      },
    },
  },
];

/** The files routes' bodies (schema/api-files.ts). */
function fileRoutes(): FuzzRoute[] {
  const path: Field = { spec: { type: 'string', min: 1, max: 4096, noNul: true } };
  const mode: Field = { spec: { type: 'string', max: 6, bad: ['', '7', '77', '0x1ff', 'rwxr-xr-x', '0999', '77777', '-755', ' 755', '0o', '0o7777 '] } };
  const bool = (): Field => ({ spec: { type: 'bool' }, optional: true });
  const at = (p: string) => `/computers/{id}/files${p}`;
  return [
    { method: 'POST', path: at('/stat'), auth: 'tenant', shape: { valid: { path: '/workspace' }, fields: { path } } },
    { method: 'POST', path: at('/mkdir'), auth: 'tenant', shape: { valid: { path: '/tmp/fuzz-dir' }, fields: { path, recursive: bool(), mode: { ...mode, optional: true } } } },
    { method: 'POST', path: at('/rename'), auth: 'tenant', shape: { valid: { from: '/tmp/a', to: '/tmp/b' }, fields: { from: path, to: path } } },
    { method: 'POST', path: at('/copy'), auth: 'tenant', shape: { valid: { from: '/tmp/a', to: '/tmp/b' }, fields: { from: path, to: path, recursive: bool() } } },
    { method: 'POST', path: at('/chmod'), auth: 'tenant', shape: { valid: { path: '/tmp/a', mode: '0644' }, fields: { path, mode } } },
    { method: 'DELETE', path: at(''), auth: 'tenant', shape: { valid: { path: '/tmp/fuzz-gone' }, fields: { path: { ...path, optional: true }, recursive: bool() }, emptyInvalid: true } },
    {
      method: 'POST',
      path: at('/write'),
      auth: 'tenant',
      bodyLimit: 10 * 1024 * 1024,
      // content_base64 has no length bound but the body's; 12 makes every "over max" value 13+ characters of
      // which none is base64 (13 is not a multiple of 4). `content` takes any text, so it has no invalid value.
      shape: { valid: { path: '/tmp/fuzz-w', content_base64: 'eA==' }, fields: { path, content_base64: { spec: { type: 'string', max: 12, bad: ['!!!!', 'abc', 'YQ=', 'a b=', '===='] }, optional: true } } },
    },
    { method: 'POST', path: at('/export'), auth: 'tenant', shape: { valid: { path: '/etc/hostname' }, fields: { path, expires_in: { spec: { type: 'int', min: 1, max: 604_800 }, optional: true } } } },
  ];
}

/** The snapshot routes' bodies (schema/api-snapshots.ts); the body is checked before the snapshot id is looked up. */
function snapshotRoutes(): FuzzRoute[] {
  const sid = '6f1c2a7e-0b4d-4c1e-9a7f-3d2e1c0b9a8f';
  const comment: Field = { spec: { type: 'string', max: 1024 }, optional: true, nullable: true };
  const keep: Field = { spec: { type: 'bool' }, optional: true };
  return [
    { method: 'POST', path: '/computers/{id}/snapshots', auth: 'tenant', shape: { valid: { comment: 'fuzz' }, fields: { comment, keep } } },
    { method: 'PATCH', path: `/computers/{id}/snapshots/${sid}`, auth: 'tenant', shape: { valid: { keep: true }, fields: { comment, keep }, emptyInvalid: true } },
    { method: 'POST', path: `/computers/{id}/restore/${sid}`, auth: 'tenant', shape: { valid: { name: 'fuzz-restored' }, fields: { name: opt(name) } } },
  ];
}
