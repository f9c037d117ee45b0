/**
 * The file of a multipart/form-data upload as a stream, without holding the
 * body: the parts are read as they arrive, the first one that is a file (it
 * has a filename, or is named "file") is handed on byte by byte, and only
 * the end of each chunk that could be the start of the closing delimiter is
 * held back. Fields before the file are skipped; whatever follows it is not
 * read.
 */

const enc = new TextEncoder();
/** A part's headers larger than this are refused (they are a name and a filename). */
const MAX_HEADER_BYTES = 16 * 1024;

export class MultipartError extends Error {}

/** The boundary of a multipart/form-data Content-Type, or null when it is not one. */
export function multipartBoundary(contentType: string | null): string | null {
  if (!contentType || !/^multipart\/form-data\s*;/i.test(contentType)) return null;
  const m = /;\s*boundary=(?:"([^"]{1,70})"|([^\s;"]{1,70}))/i.exec(contentType);
  return m ? (m[1] ?? m[2]) : null;
}

function indexOf(hay: Uint8Array, needle: Uint8Array, from = 0): number {
  const first = needle[0];
  for (let i = hay.indexOf(first, from); i !== -1 && i <= hay.length - needle.length; i = hay.indexOf(first, i + 1)) {
    let j = 1;
    while (j < needle.length && hay[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
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

/** The first file part of `body`: its filename (null when the part names none) and its bytes. */
export async function filePart(body: ReadableStream<Uint8Array>, boundary: string): Promise<{ filename: string | null; bytes: ReadableStream<Uint8Array> }> {
  const reader = body.getReader();
  const opening = enc.encode(`--${boundary}`);
  const delimiter = enc.encode(`\r\n--${boundary}`);
  let buf: Uint8Array = new Uint8Array(0);
  const more = async (): Promise<boolean> => {
    const { done, value } = await reader.read();
    if (done) return false;
    buf = concat(buf, value);
    return true;
  };

  // The first boundary (a preamble before it is allowed), then part after part until a file.
  let at = -1;
  while ((at = indexOf(buf, opening)) === -1) {
    if (buf.length > MAX_HEADER_BYTES) throw new MultipartError('no multipart boundary where the body starts');
    if (!(await more())) throw new MultipartError('the body has no multipart part');
  }
  buf = buf.subarray(at + opening.length);
  for (;;) {
    // Right after a boundary: "--" closes the body, otherwise a part's headers follow.
    while (buf.length < 2) if (!(await more())) throw new MultipartError('the body ended after a boundary');
    if (buf[0] === 0x2d && buf[1] === 0x2d) throw new MultipartError('the body has no file part (send the file as a form field with a filename)');
    let end: number;
    while ((end = indexOf(buf, enc.encode('\r\n\r\n'))) === -1) {
      if (buf.length > MAX_HEADER_BYTES) throw new MultipartError("a part's headers are too large");
      if (!(await more())) throw new MultipartError('the body ended inside a part’s headers');
    }
    const head = new TextDecoder().decode(buf.subarray(0, end));
    buf = buf.subarray(end + 4);
    const disposition = /^content-disposition:\s*form-data(.*)$/im.exec(head)?.[1] ?? '';
    const name = /;\s*name="([^"]*)"/i.exec(disposition)?.[1] ?? null;
    const filename = /;\s*filename="([^"]*)"/i.exec(disposition)?.[1] ?? null;
    if (filename !== null || name === 'file') return { filename: filename || null, bytes: partBytes(reader, buf, delimiter) };
    // A plain field: skip to the next part.
    while ((at = indexOf(buf, delimiter)) === -1) {
      buf = buf.subarray(Math.max(0, buf.length - delimiter.length + 1));
      if (!(await more())) throw new MultipartError('the body ended inside a field');
    }
    buf = buf.subarray(at + delimiter.length);
  }
}

/** The bytes of a part up to the delimiter, as they arrive. */
function partBytes(reader: ReadableStreamDefaultReader<Uint8Array>, start: Uint8Array, delimiter: Uint8Array): ReadableStream<Uint8Array> {
  let buf = start;
  let done = false;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        for (;;) {
          const at = indexOf(buf, delimiter);
          if (at !== -1) {
            if (at > 0) controller.enqueue(buf.subarray(0, at));
            controller.close();
            done = true;
            void reader.cancel().catch(() => {});
            return;
          }
          // All but what could be the start of the delimiter can go.
          const safe = buf.length - (delimiter.length - 1);
          if (safe > 0) {
            controller.enqueue(buf.subarray(0, safe));
            buf = buf.subarray(safe);
            return;
          }
          const { done: ended, value } = await reader.read();
          if (ended) return controller.error(new MultipartError('the body ended before the file part’s closing boundary'));
          buf = concat(buf, value);
        }
      },
      cancel() {
        if (!done) void reader.cancel().catch(() => {});
      },
    },
    { highWaterMark: 0 },
  );
}
