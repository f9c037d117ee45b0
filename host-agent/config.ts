/** Command-line flags and environment of the agent, validated before anything starts. */
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { ISOLATIONS } from '../schema/isolation.ts';

const Config = z.object({
  api: z.url({ message: '--api must be the API base URL, e.g. https://hangar.example.com' }),
  key: z.string().startsWith('hk_', { message: '--key must be a host key (hk_…) from the operator API or POST /api/v1/opencomputers/hosts' }),
  dataDir: z.string().min(1),
  /** The drivers this host offers, the first being the default for computers whose spec names none. */
  drivers: z
    .array(z.enum(ISOLATIONS, { message: `--driver must name drivers among ${ISOLATIONS.join(', ')}` }))
    .min(1, { message: '--driver must name at least one driver' })
    .refine((d) => new Set(d).size === d.length, { message: '--driver names a driver twice' }),
  /** Absent: share the host's local pip mirror directories, if any. */
  shareReadOnly: z.array(z.string().startsWith('/')).optional(),
  /** Host mode: file requests are confined to this tree. */
  fsRoot: z.string().min(1).optional(),
  /** Host mode: a model server already on this host's loopback that clusters use instead of one the agent starts. */
  modelServer: z.url({ message: '--model-server must be a URL such as http://127.0.0.1:11434' }).optional(),
  /** Host mode: the directory that holds `models/` (model files); default ~/.hangar. */
  modelsDir: z.string().min(1).optional(),
  /** Size of the disk pool made when the data dir cannot reflink; absent: its free space. */
  diskPoolGb: z.coerce.number().int().positive({ message: '--disk-pool-gb must be a whole number of GiB' }).optional(),
});
export type AgentConfig = z.infer<typeof Config>;

export const USAGE = `hangar-agent --api URL --key hk_… [--data-dir DIR] [--driver sandbox|vm|sandbox,vm] [--share-ro DIR[,DIR…]] [--disk-pool-gb N] [--fs-root DIR]
             [--model-server URL] [--models-dir DIR]

  --api        base URL of the Hangar API (env HANGAR_API)
  --key        this host's key (env HANGAR_HOST_KEY): from POST /api/v1/admin/hosts for a
               fleet host, or POST /api/v1/opencomputers/hosts for a machine of your own,
               which the agent then serves itself ("host mode", as the user running it)

  fleet hosts:
  --data-dir   where templates and computer disks live (env HANGAR_DATA_DIR, default /var/lib/hangar)
  --driver     how computers are made, one or several, comma-separated (env HANGAR_DRIVER):
               sandbox (namespaces and cgroups on this kernel, the default) or
               vm (QEMU microVMs with their own kernel; KVM when it works, else
               software emulation); with several, the first is the default and
               a create may ask for another with "isolation"
  --share-ro   host directories every computer sees read-only at the same path,
               e.g. a local package mirror (env HANGAR_SHARE_RO, comma-separated);
               default: the local directories the host's pip config names
  --disk-pool-gb size of the XFS pool that holds computer disks when the data dir's
               file system cannot make reflink copies (env HANGAR_DISK_POOL_GB);
               default: the data dir's free space when the pool is made

  host mode:
  --fs-root    serve files only under this directory (env HANGAR_FS_ROOT); default:
               wherever the user's own permissions reach
  --model-server a model server already on this host's loopback (Ollama, llama.cpp),
               e.g. http://127.0.0.1:11434, for inference clusters (env HANGAR_MODEL_SERVER);
               default: the agent starts its own per model
  --models-dir where model files are kept, under models/ (env HANGAR_MODELS_DIR; default ~/.hangar)`;

export function readConfig(argv: string[], env: NodeJS.ProcessEnv): AgentConfig {
  const { values } = parseArgs({
    args: argv,
    options: {
      api: { type: 'string' },
      key: { type: 'string' },
      'data-dir': { type: 'string' },
      driver: { type: 'string' },
      'share-ro': { type: 'string' },
      'fs-root': { type: 'string' },
      'model-server': { type: 'string' },
      'models-dir': { type: 'string' },
      'disk-pool-gb': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const share = values['share-ro'] ?? env.HANGAR_SHARE_RO;
  const r = Config.safeParse({
    api: values.api ?? env.HANGAR_API,
    key: values.key ?? env.HANGAR_HOST_KEY,
    dataDir: values['data-dir'] ?? env.HANGAR_DATA_DIR ?? '/var/lib/hangar',
    drivers: (values.driver ?? env.HANGAR_DRIVER ?? 'sandbox').split(',').map((d) => d.trim()),
    shareReadOnly: share === undefined ? undefined : share.split(',').filter(Boolean),
    fsRoot: values['fs-root'] ?? env.HANGAR_FS_ROOT,
    modelServer: values['model-server'] ?? env.HANGAR_MODEL_SERVER,
    modelsDir: values['models-dir'] ?? env.HANGAR_MODELS_DIR,
    diskPoolGb: values['disk-pool-gb'] ?? env.HANGAR_DISK_POOL_GB,
  });
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new Error(`${issue.path.join('.') || 'config'}: ${issue.message}\n\n${USAGE}`);
  }
  return r.data;
}

/** ws(s)://host[:port] from the API URL, whatever path it was given with. */
export function wsBase(api: string): string {
  const u = new URL(api);
  return `${u.protocol === 'https:' ? 'wss:' : 'ws:'}//${u.host}`;
}
