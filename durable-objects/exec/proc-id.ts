/** Random id of a streamed process: short, lower-case, as the protocol wants (it travels in every binary frame). */
export function newProcId(): string {
  return [...crypto.getRandomValues(new Uint8Array(10))].map((b) => b.toString(16).padStart(2, '0')).join('');
}
