/**
 * multipart/form-data (RFC 7578) read as it streams: parts one after the
 * other, each part's body a stream of its own that must be read (or
 * cancelled) before the next part is looked at. Nothing larger than a chunk
 * of the request and one boundary's worth is ever held, so a part of any size
 * passes with bounded memory.
 */

export interface Part {
  /** The form field's name. */
  name: string;
  /** Set for files. */
  filename: string | null;
  contentType: string | null;
  body: ReadableStream<Uint8Array>;
}

export class MultipartError extends Error {}

/** Headers of one part at most, and how many parts a body may have. */
const MAX_HEAD_BYTES = 16 * 1024;
export const MAX_PARTS = 1000;

/** The boundary a Content-Type names, or null when it is not multipart/form-data with one. */
export function boundaryOf(contentType: string | null): string | null {
  if (!contentType || !/^multipart\/form-data\s*;/i.test(contentType)) return null;
  const m = /;\s*boundary=(?:"([^"]{1,70})"|([^\s;"]{1,70}))/i.exec(contentType);
  return m ? (m[1] ?? m[2]) : null;
}

const enc = new TextEncoder();

/** Index of `needle` in `hay` at or after `from`, or -1. */
function indexOf(hay: Uint8Array, needle: Uint8Array, from = 0): number {
  const first = needle[0];
  outer: for (let i = hay.indexOf(first, from); i !== -1 && i <= hay.length - needle.length; i = hay.indexOf(first, i + 1)) {
    for (let j = 1; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function parseHead(text: string): { name: string; filename: string | null; contentType: string | null } {
  let name: string | null = null;
  let filename: string | null = null;
  let contentType: string | null = null;
  for (const line of text.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const key = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (key === 'content-type') contentType = value;
    if (key !== 'content-disposition') continue;
    if (!/^form-data\b/i.test(value)) throw new MultipartError('a part is not form-data');
    const param = (p: string) => {
      const m = new RegExp(`;\\s*${p}="((?:[^"\\\\]|\\\\.)*)"|;\\s*${p}=([^;\\s]+)`, 'i').exec(value);
      return m ? (m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]) : null;
    };
    const star = /;\s*filename\*=UTF-8''([^;\s]+)/i.exec(value);
    name = param('name');
    filename = star ? decodeURIComponent(star[1]) : param('filename');
  }
  if (name === null) throw new MultipartError('a part has no form-data name');
  return { name, filename, contentType };
}

/** The parts of a multipart body, in order. */
export async function* parseMultipart(body: ReadableStream<Uint8Array>, boundary: string): AsyncGenerator<Part> {
  const reader = body.getReader();
  const delimiter = enc.encode(`\r\n--${boundary}`);
  // Everything before the first boundary is a preamble; reading as if a CRLF came first finds a boundary on the first line.
  let buf: Uint8Array = enc.encode('\r\n');
  let ended = false;
  const more = async (): Promise<boolean> => {
    if (ended) return false;
    const { done, value } = await reader.read();
    if (done) {
      ended = true;
      return false;
    }
    buf = concat(buf, value);
    return true;
  };
  try {
    // The first boundary.
    for (;;) {
      const at = indexOf(buf, delimiter);
      if (at >= 0) {
        buf = buf.subarray(at + delimiter.length);
        break;
      }
      if (buf.length > MAX_HEAD_BYTES) throw new MultipartError('no multipart boundary where one was expected');
      if (!(await more())) throw new MultipartError('the body ended before its first multipart boundary');
    }
    for (let parts = 0; ; parts++) {
      // After a boundary: "--" ends the body, CRLF starts a part.
      while (buf.length < 2) if (!(await more())) throw new MultipartError('the body ended after a boundary');
      if (buf[0] === 0x2d && buf[1] === 0x2d) return;
      if (buf[0] !== 0x0d || buf[1] !== 0x0a) throw new MultipartError('malformed multipart boundary line');
      if (parts >= MAX_PARTS) throw new MultipartError(`more than ${MAX_PARTS} parts`);
      buf = buf.subarray(2);
      let headEnd: number;
      while ((headEnd = indexOf(buf, enc.encode('\r\n\r\n'))) < 0) {
        if (buf.length > MAX_HEAD_BYTES) throw new MultipartError('a part has more than 16 KiB of headers');
        if (!(await more())) throw new MultipartError('the body ended in the headers of a part');
      }
      const head = parseHead(new TextDecoder().decode(buf.subarray(0, headEnd)));
      buf = buf.subarray(headEnd + 4);
      let partDone = false;
      let partError: Error | null = null;
      const partBody = new ReadableStream<Uint8Array>(
        {
          async pull(controller) {
            try {
              for (;;) {
                const at = indexOf(buf, delimiter);
                if (at >= 0) {
                  if (at > 0) controller.enqueue(buf.slice(0, at));
                  buf = buf.subarray(at + delimiter.length);
                  partDone = true;
                  controller.close();
                  return;
                }
                // Keep what could be the start of a boundary; hand on the rest.
                const safe = buf.length - (delimiter.length - 1);
                if (safe > 0) {
                  controller.enqueue(buf.slice(0, safe));
                  buf = buf.subarray(safe);
                  return;
                }
                if (!(await more())) throw new MultipartError('the body ended inside a part');
              }
            } catch (err) {
              partError = err as Error;
              controller.error(err);
            }
          },
          cancel() {
            partError = new MultipartError('a part was not read to its end');
          },
        },
        { highWaterMark: 0 },
      );
      yield { ...head, body: partBody };
      if (partError) throw partError;
      if (!partDone) throw new MultipartError('a part was not read to its end');
    }
  } finally {
    reader.releaseLock();
  }
}

/** A part's body as text, refused past `max` bytes (form fields are short). */
export async function partText(part: Part, max = 64 * 1024): Promise<string> {
  const reader = part.body.getReader();
  let out: Uint8Array = new Uint8Array(0);
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return new TextDecoder().decode(out);
    out = concat(out, value);
    if (out.length > max) throw new MultipartError(`form field ${part.name} is longer than ${max} bytes`);
  }
}
