/** OpenComputers (spec/05): tenant hosts and what runs on them. */
import type { RouteDef } from '../../router.ts';
import { EVENT_ROUTES } from './events.ts';
import { FILE_ROUTES } from './files.ts';
import { HOST_ROUTES } from './hosts.ts';
import { INSTALL_ROUTES } from './install.ts';
import { JOB_ROUTES } from './jobs.ts';
import { OC_TERMINAL_ROUTES } from './terminal.ts';
import { OC_DESKTOP_ROUTES } from './desktop.ts';
import { SECRET_ROUTES } from './secrets.ts';
import { TUNNEL_ROUTES } from './tunnels.ts';
import { CLUSTER_ROUTES } from './clusters.ts';
import { AGENT_ROUTES } from './agents.ts';

export const OPENCOMPUTERS_ROUTES: RouteDef[] = [...EVENT_ROUTES, ...HOST_ROUTES, ...JOB_ROUTES, ...OC_TERMINAL_ROUTES, ...OC_DESKTOP_ROUTES, ...SECRET_ROUTES, ...FILE_ROUTES, ...INSTALL_ROUTES, ...TUNNEL_ROUTES, ...CLUSTER_ROUTES, ...AGENT_ROUTES];
