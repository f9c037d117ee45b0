/** Every route of the API, by resource. */
import type { RouteDef } from '../router.ts';
import { HEALTH_ROUTES } from './health.ts';
import { ADMIN_ROUTES } from './admin.ts';
import { AUTH_ROUTES } from './auth-token.ts';
import { AGENT_ROUTES } from './agent.ts';
import { COMPUTER_ROUTES } from './computers.ts';
import { COMPUTER_ACTION_ROUTES } from './computer-actions.ts';
import { COMPUTER_INFO_ROUTES } from './computer-info.ts';
import { EXEC_ROUTES } from './exec.ts';
import { EXEC_STREAM_ROUTES } from './exec-stream.ts';
import { EXEC_SOCKET_ROUTES } from './exec-socket.ts';
import { TERMINAL_ROUTES } from './terminal.ts';
import { ENV_VAR_ROUTES } from './env-vars.ts';
import { PORT_ROUTES } from './ports.ts';
import { DESKTOP_CONTROL_ROUTES } from './desktop-control.ts';
import { DESKTOP_VIEWER_ROUTES } from './desktop-viewer.ts';
import { PORT_SOCKET_ROUTES } from './port-sockets.ts';
import { WORKSPACE_ROUTES } from './workspaces.ts';
import { PROJECT_ROUTES } from './projects.ts';
import { OPENCOMPUTERS_ROUTES } from './opencomputers/index.ts';
import { COMPUTER_EVENT_ROUTES } from './computers/events.ts';
import { FILE_ROUTES } from './computers/files.ts';
import { LOG_ROUTES } from './computers/logs.ts';
import { FILE_BYTE_ROUTES } from './computers/file-bytes.ts';
import { SNAPSHOT_ROUTES } from './computers/snapshots.ts';
import { EVENT_ROUTES } from './events.ts';
import { INFERENCE_ROUTES } from './inference.ts';

export const ROUTES: RouteDef[] = [
  ...HEALTH_ROUTES,
  ...ADMIN_ROUTES,
  ...AUTH_ROUTES,
  ...AGENT_ROUTES,
  ...COMPUTER_ROUTES,
  ...COMPUTER_ACTION_ROUTES,
  ...COMPUTER_INFO_ROUTES,
  ...EXEC_ROUTES,
  ...EXEC_STREAM_ROUTES,
  ...EXEC_SOCKET_ROUTES,
  ...TERMINAL_ROUTES,
  ...ENV_VAR_ROUTES,
  ...PORT_ROUTES,
  ...DESKTOP_CONTROL_ROUTES,
  ...DESKTOP_VIEWER_ROUTES,
  ...PORT_SOCKET_ROUTES,
  ...WORKSPACE_ROUTES,
  ...PROJECT_ROUTES,
  ...OPENCOMPUTERS_ROUTES,
  ...COMPUTER_EVENT_ROUTES,
  ...FILE_ROUTES,
  ...LOG_ROUTES,
  ...FILE_BYTE_ROUTES,
  ...SNAPSHOT_ROUTES,
  ...EVENT_ROUTES,
  ...INFERENCE_ROUTES,
];
