/**
 * Text the API stores and shows back to people: names, and ids callers give
 * us. None may hold characters that hide or disguise what is shown — control
 * characters (NUL among them), line and paragraph separators, the
 * bidirectional embedding, override and isolate controls (which make
 * "txt.exe" read as "exe.txt"), or half of a surrogate pair — and numbers in
 * paths and queries are plain decimal, so one value has one spelling.
 */
import { z } from 'zod';

const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** True when the text has none of the characters above. */
export const printable = (s: string): boolean => !UNSAFE.test(s);

const UNPRINTABLE = 'must not contain control, line-separator or bidirectional-override characters';

/** A display name: trimmed, 1 to 128 characters, printable. */
export const DisplayName = z.string().trim().min(1).max(128).refine(printable, UNPRINTABLE);

/** Free text of at most `max` characters that is shown back as given (external ids, session ids): printable. */
export const PlainText = (max: number) => z.string().max(max).refine(printable, UNPRINTABLE);

/**
 * A whole number as a path or query parameter: decimal digits only, no sign,
 * no leading zeros, no spaces ("0x1F90", "08080", " 80", "8e3", "80.0" are refused).
 */
export const DecimalInt = z
  .string()
  .regex(/^(0|[1-9][0-9]{0,14})$/, 'must be a whole number written in decimal digits')
  .transform(Number);
