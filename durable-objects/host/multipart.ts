/**
 * The file of a multipart/form-data upload to a tenant host, as a stream: the
 * first part that is a file (it has a filename, or is named "file") is handed
 * on as it arrives; form fields before it are read past, and nothing after it
 * is read. The parsing is the computers' files API's (files/multipart.ts), so
 * both take the same bodies with the same bounded memory.
 */
import { MultipartError, boundaryOf, parseMultipart } from '../files/multipart.ts';

export { MultipartError, boundaryOf as multipartBoundary };

/** The first file part of `body`: its filename (null when the part names none) and its bytes. */
export async function filePart(body: ReadableStream<Uint8Array>, boundary: string): Promise<{ filename: string | null; bytes: ReadableStream<Uint8Array> }> {
  // Stepped by hand rather than with for-await: leaving such a loop would end the parser, and the file's bytes with it.
  const parts = parseMultipart(body, boundary);
  for (;;) {
    const next = await parts.next();
    if (next.done) throw new MultipartError('the body has no file part');
    const part = next.value;
    if (part.filename !== null || part.name === 'file') return { filename: part.filename, bytes: part.body };
    const reader = part.body.getReader();
    while (!(await reader.read()).done);
  }
}
