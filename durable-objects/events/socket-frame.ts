/** One text frame of the events socket: `{type, data, payload, timestamp}` (`payload` is `data` again, for clients that read it there). */
export const eventFrame = (type: string, data: Record<string, unknown>, timestamp = new Date().toISOString()): string =>
  JSON.stringify({ type, data, payload: data, timestamp });

/** Sends a frame to a socket that may be closing (then it just misses it). */
export function sendFrame(ws: WebSocket, type: string, data: Record<string, unknown>, timestamp?: string): void {
  try {
    ws.send(eventFrame(type, data, timestamp));
  } catch {
    /* closing */
  }
}
