/**
 * Seeded generators of malformed request bodies: for each field type the
 * values it must refuse, and for each body the broken shapes around it
 * (missing fields, broken or truncated JSON, other top-level values, deep
 * nesting, extra fields, other content types). Every case is invalid by
 * construction, so a server that accepts one has a bug.
 */
import { seeded, type Rng } from '../../host-agent/models/seeded-random.ts';

export { seeded, type Rng };

/** A JSON text fragment sent as is, for what JSON.stringify cannot write (1e999 parses to Infinity). */
export class RawJson {
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
}

export type FieldSpec =
  | { type: 'string'; min?: number; max: number; bytes?: boolean; trim?: boolean; bad?: string[]; noNul?: boolean }
  | { type: 'enum'; values: readonly string[] }
  | { type: 'int'; min: number; max?: number }
  | { type: 'number'; min: number; max: number; nonZero?: boolean }
  | { type: 'uuid' }
  | { type: 'array'; of: 'enum' | 'uuid' | 'string'; values?: readonly string[]; min?: number; max: number; badItems?: unknown[] }
  | { type: 'labels' }
  | { type: 'bool' };

export interface Field {
  spec: FieldSpec;
  optional?: boolean;
  nullable?: boolean;
}

/** A body the route accepts (never sent as is) and the fields the cases break one by one. */
export interface BodyShape {
  valid: Record<string, unknown>;
  fields: Record<string, Field>;
  /** Refuses `{}` though every field is optional (at least one is needed). */
  emptyInvalid?: boolean;
}

export interface BodyCase {
  label: string;
  text: string;
  contentType?: string;
}

const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)];

/** Characters that break naive code: NUL and controls, quotes, RTL and BOM marks, emoji (with joiners), a lone surrogate. */
const NASTY = ['a', 'Z', '0', ' ', '\u0000', '\u0007', '\n', '\r', '\t', '"', '\\', "'", '<', '%', '\u200f', '\ufeff', 'ä', '中', '😀', '👩‍👩‍👧', '\ud800', '\u{10ffff}'];

/** At least `length` code points (what zod's min/max count) of NASTY characters. */
export function nastyString(rng: Rng, length: number): string {
  const parts: string[] = [];
  let points = 0;
  while (points < length) {
    const ch = pick(rng, NASTY);
    parts.push(ch);
    points += [...ch].length;
  }
  return parts.join('');
}

const UUID = '550e8400-e29b-41d4-a716-446655440000';

/** JSON of a value whose RawJson parts are spliced in as written. */
export function toJson(v: unknown): string {
  if (v instanceof RawJson) return v.text;
  if (Array.isArray(v)) return `[${v.map(toJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    return `{${Object.entries(v)
      .map(([k, x]) => `${JSON.stringify(k)}:${toJson(x)}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** Values of other JSON types than a string. */
const NOT_STRINGS: [string, unknown][] = [
  ['zero', 0],
  ['negative', -1],
  ['float', 1.5],
  ['huge', 1e308],
  ['infinity literal', new RawJson('1e999')],
  ['true', true],
  ['false', false],
  ['empty array', []],
  ['array of string', ['x']],
  ['empty object', {}],
  ['object', { value: 'x' }],
];

/** Values of other JSON types than a number. */
const NOT_NUMBERS: [string, unknown][] = [
  ['numeric string', '1'],
  ['empty string', ''],
  ['NaN string', 'NaN'],
  ['Infinity string', 'Infinity'],
  ['hex string', '0x10'],
  ['exponent string', '1e3'],
  ['true', true],
  ['false', false],
  ['empty array', []],
  ['array of number', [1]],
  ['empty object', {}],
  ['object', { value: 1 }],
];

/** Values `field` must refuse, labelled. */
export function invalidValues(field: Field, rng: Rng): [string, unknown][] {
  const out: [string, unknown][] = [];
  if (!field.nullable) out.push(['null', null]);
  const s = field.spec;
  switch (s.type) {
    case 'string': {
      out.push(...NOT_STRINGS);
      if ((s.min ?? 0) >= 1) out.push(['empty', '']);
      if (s.trim) out.push(['blank', ' \t\n ']);
      const over = s.max + 1;
      out.push(['one over max', 'a'.repeat(over)]);
      // One code point, two UTF-16 units, four UTF-8 bytes: over the limit however it is counted.
      out.push(['emoji over max', '😀'.repeat(over)]);
      // Framed by letters so trimming cannot bring it back under the limit.
      if (!s.bytes) out.push(['nasty over max', `a${nastyString(rng, over)}a`]);
      if (s.max < 10_000) out.push(['10k chars', nastyString(rng, 10_000)]);
      if (s.noNul) out.push(['NUL inside', 'a\u0000b']);
      for (const b of s.bad ?? []) out.push([`bad ${JSON.stringify(b.slice(0, 20))}`, b]);
      break;
    }
    case 'enum': {
      const v = s.values[0];
      out.push(...NOT_STRINGS);
      out.push(['empty', ''], ['upper case', v.toUpperCase()], ['trailing space', `${v} `], ['NUL suffix', `${v}\u0000`], ['emoji', '😀'], ['10k chars', nastyString(rng, 10_000)]);
      out.push(['nasty', nastyString(rng, 1 + Math.floor(rng() * 40))]);
      break;
    }
    case 'uuid':
      out.push(...NOT_STRINGS);
      out.push(['empty', ''], ['not a uuid', 'not-a-uuid'], ['short', UUID.slice(0, 23)], ['suffix', `${UUID}x`], ['braces', `{${UUID}}`], ['NUL', `${UUID}\u0000`], ['nasty', nastyString(rng, 36)]);
      break;
    case 'int':
    case 'number': {
      out.push(...NOT_NUMBERS);
      out.push(['infinity literal', new RawJson('1e999')], ['-infinity literal', new RawJson('-1e999')]);
      out.push(['below min', s.min - 1], ['huge', 1e308], ['-huge', -1e308]);
      if (s.max !== undefined) out.push(['above max', s.max + 1]);
      if (s.type === 'int') out.push(['float', s.min + 0.5], ['2^53', 2 ** 53], ['-2^53', -(2 ** 53)]);
      if (s.type === 'number' && s.nonZero) out.push(['zero', 0], ['negative zero literal', new RawJson('-0')], ['underflow literal', new RawJson('1e-400')]);
      break;
    }
    case 'array': {
      const item = s.of === 'uuid' ? UUID : s.of === 'string' ? 'A=1' : s.values![0];
      out.push(['string', item], ['number', 1], ['object', {}], ['true', true], ['array of numbers', [1, 2]], ['array of null', [null]], ['nested arrays', [[item]]]);
      for (const [i, bad] of (s.badItems ?? [s.of === 'uuid' ? 'not-a-uuid' : 'no-such-app']).entries()) out.push([`bad item ${i}`, [item, bad]]);
      out.push(['over max items', Array.from({ length: s.max + 1 }, () => item)]);
      if ((s.min ?? 0) >= 1) out.push(['empty', []]);
      break;
    }
    case 'bool':
      out.push(['string true', 'true'], ['string false', 'false'], ['one', 1], ['zero', 0], ['empty string', ''], ['array', [true]], ['object', {}]);
      break;
    case 'labels':
      out.push(['string', 'a=b'], ['number', 1], ['array', [['a', 'b']]], ['true', true]);
      out.push(['bad key', { 'bad key!': 'v' }], ['empty key', { '': 'v' }], ['NUL key', { 'a\u0000': 'v' }], ['number value', { k: 1 }]);
      out.push(['long value', { k: 'x'.repeat(256) }], ['too many', Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v']))]);
      break;
  }
  return out;
}

/** Fields no route has, including prototype-pollution keys and ones naming server-owned columns. */
function extraFields(rng: Rng): Record<string, unknown> {
  return {
    ['__proto__']: { admin: true, status: 'running' },
    constructor: { prototype: { polluted: true } },
    id: UUID,
    org_id: UUID,
    tenant_id: UUID,
    status: 'deleted',
    credits: 1e9,
    '\u0000': 1,
    '😀': '😀',
    [nastyString(rng, 12)]: nastyString(rng, 12),
    ['k'.repeat(1000)]: 1,
    nested: deep(200, 'x'),
  };
}

function deep(depth: number, leaf: unknown): unknown {
  let v = leaf;
  for (let i = 0; i < depth; i++) v = i % 2 ? { a: v } : [v];
  return v;
}

/** Whether an empty body (read as `{}`) must be refused. */
const emptyInvalid = (shape: BodyShape) => shape.emptyInvalid || Object.values(shape.fields).some((f) => !f.optional);

/** Every malformed body for one route. */
export function bodyCases(shape: BodyShape, rng: Rng): BodyCase[] {
  const cases: BodyCase[] = [];
  const add = (label: string, value: unknown) => cases.push({ label, text: toJson(value) });
  const firstInvalid: Record<string, unknown> = {};

  for (const [name, field] of Object.entries(shape.fields)) {
    const values = invalidValues(field, rng);
    firstInvalid[name] = values[0][1];
    for (const [label, v] of values) add(`${name}: ${label}`, { ...shape.valid, [name]: v });
    if (!field.optional) {
      const { [name]: _dropped, ...rest } = shape.valid;
      add(`${name}: missing`, rest);
    }
  }
  const [someField, someBad] = Object.entries(firstInvalid)[0];
  add('every field invalid', firstInvalid);
  add('extra fields beside an invalid one', { ...shape.valid, ...extraFields(rng), [someField]: someBad });
  add('invalid field deep inside', { ...shape.valid, [someField]: deep(1000, 'x') });

  const valid = toJson(shape.valid);
  const text = (label: string, t: string, contentType?: string) => cases.push({ label, text: t, contentType });
  if (emptyInvalid(shape)) {
    text('empty body', '');
    text('whitespace body', ' \n\t ');
    text('empty object', '{}');
  }
  for (const t of ['hello', 'undefined', 'NaN', "{'single': 'quotes'}", '{"a":1,}', '{"a":1}{"b":2}', '<xml/>', '\u0000', 'name=x&size=small']) {
    text(`not JSON ${JSON.stringify(t)}`, t);
  }
  for (const at of [1, Math.floor(valid.length / 2), valid.length - 1]) text(`truncated at ${at}`, valid.slice(0, at));
  for (const t of ['null', 'true', '0', '-1', '1e999', '"string"', '[]', `[${valid}]`]) text(`top-level ${t.slice(0, 20)}`, t);
  text('deeply nested arrays', `${'['.repeat(200_000)}${']'.repeat(200_000)}`);
  text('deeply nested objects', `{${JSON.stringify(someField)}:${'{"a":'.repeat(5_000)}1${'}'.repeat(5_001)}`);
  text('random bytes as text', nastyString(rng, 64));

  // The server reads JSON whatever the Content-Type says; these must still be refused for what they hold.
  const broken = cases[0].text;
  // A byte order mark is dropped when the body is decoded: what follows must be refused on its own.
  text('byte order mark before an invalid body', `\ufeff${broken}`);
  for (const ct of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml', 'application/json; charset=latin1']) {
    text(`content-type ${ct}`, broken, ct);
  }
  return cases;
}

/** A deterministic sample of at most `n` cases (all of them when there are fewer). */
export function sample<T>(xs: T[], n: number, rng: Rng): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a.slice(0, n);
}
