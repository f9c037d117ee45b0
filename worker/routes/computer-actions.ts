/** Lifecycle actions: start, stop, restart, clone, resize, move. Each answers once the host agent has done it. */
import { ApiError, unwrap } from '../../schema/errors.ts';
import { CloneComputer, MoveComputer, ResizeComputer, StopComputer } from '../../schema/api.ts';
import { json } from '../http/responses.ts';
import { isoNow } from '../http/ids.ts';
import { route, type RouteContext, type RouteDef } from '../router.ts';
import { callerOf, computerStub, loadComputer } from '../computers/access.ts';
import { computerResource } from '../computers/view.ts';
import { insertComputer } from './computers.ts';
import { pickHost, regionExists } from '../computers/placement.ts';
import { SIZES } from '../../schema/sizes.ts';
import { resizedDiskGb } from '../computers/disk-size.ts';

type Action = 'start' | 'restart';

const lifecycleRoute = (action: Action) =>
  route({
    method: 'POST',
    path: `/api/v1/computers/:id/${action}`,
    auth: 'tenant',
    handler: async (c: RouteContext) => {
      const row = await loadComputer(c.env, c.principal, c.params.id);
      unwrap(await computerStub(c.env, row.id)[action](callerOf(c.principal)));
      return json(computerResource(await loadComputer(c.env, c.principal, row.id), c.env));
    },
  });

/** Stop takes no body (the page), or `{"keep_memory": true}` (an extension: a VM resumes where it was at its next start). */
const stopRoute = route({
  method: 'POST',
  path: '/api/v1/computers/:id/stop',
  auth: 'tenant',
  body: StopComputer,
  handler: async (c) => {
    const row = await loadComputer(c.env, c.principal, c.params.id);
    unwrap(await computerStub(c.env, row.id).stop(callerOf(c.principal), c.body.keep_memory ?? false));
    return json(computerResource(await loadComputer(c.env, c.principal, row.id), c.env));
  },
});

export const COMPUTER_ACTION_ROUTES: RouteDef[] = [
  lifecycleRoute('start'),
  stopRoute,
  lifecycleRoute('restart'),
  route({
    method: 'POST',
    path: '/api/v1/computers/:id/clone',
    auth: 'tenant',
    body: CloneComputer,
    handler: async (c) => {
      const src = await loadComputer(c.env, c.principal, c.params.id);
      unwrap(await computerStub(c.env, src.id).require(callerOf(c.principal), 'clone'));
      // The copy lives on the source's host: its disk is copied there.
      const row = await insertComputer(c.env, c.principal, {
        name: c.body.name ?? `${src.name}-clone`,
        template_type: src.template_type,
        size: src.size,
        // Same host, same driver: the copy is of the source's disk.
        isolation: src.isolation,
        selected_apps: src.selected_apps,
        workspace_id: src.workspace_id,
        project_id: src.project_id,
        placement: { host: { id: src.host_id!, region: src.region } },
        auto_stop: src.auto_stop,
        external_workspace_id: src.external_workspace_id,
        external_user_id: src.external_user_id,
        external_project_id: src.external_project_id,
        metadata: src.metadata,
        visibility: src.visibility,
        resolution: src.resolution,
        clone_from: src.id,
      });
      return json(computerResource(row, c.env), 201);
    },
  }),
  route({
    method: 'POST',
    path: '/api/v1/computers/:id/resize',
    auth: 'tenant',
    body: ResizeComputer,
    handler: async (c) => {
      const row = await loadComputer(c.env, c.principal, c.params.id);
      unwrap(await computerStub(c.env, row.id).resize(callerOf(c.principal), c.body.size));
      const s = SIZES[c.body.size];
      await c.env.DB.prepare('UPDATE computers SET size = ?, vcpus = ?, memory_mb = ?, disk_gb = ?, updated_at = ? WHERE id = ?')
        .bind(c.body.size, s.vcpus, s.memory_mb, resizedDiskGb(c.env, row, c.body.size), isoNow(), row.id)
        .run();
      return json(computerResource(await loadComputer(c.env, c.principal, row.id), c.env));
    },
  }),
  route({
    method: 'POST',
    path: '/api/v1/computers/:id/move',
    auth: 'tenant',
    body: MoveComputer,
    handler: async (c) => {
      const row = await loadComputer(c.env, c.principal, c.params.id);
      const stub = computerStub(c.env, row.id);
      unwrap(await stub.require(callerOf(c.principal), 'move'));
      if (c.body.region === row.region) return json(computerResource(row, c.env));
      if (!(await regionExists(c.env, c.body.region))) throw new ApiError('REGION_UNAVAILABLE', `unknown region "${c.body.region}": no host serves it`);
      // The disk moves as it is: the new host must offer the driver that made it.
      const host = await pickHost(c.env, c.body.region, row.size, row.isolation);
      // Offline: the disk is copied to the new host and the answer comes once the computer lives there.
      unwrap(await stub.move(callerOf(c.principal), { host_id: host.id, region: host.region }));
      return json(computerResource(await loadComputer(c.env, c.principal, row.id), c.env));
    },
  }),
];
