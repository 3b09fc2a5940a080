/**
 * An incremental parser for the "rbd diff v1" stream that `rbd export-diff` writes (format described in
 * Ceph's doc/dev/rbd-diff.rst): the header `rbd diff v1\n`, metadata records (`f` from-snap, `t` to-snap,
 * `s` image size), data records (`w` offset, length, data; `z` offset, length) and the end record `e`.
 * All integers are little-endian. Written from the format description, not from another implementation.
 *
 * Memory stays bounded: the payload of a `w` record is handed on in pieces as it arrives (slices of the
 * input buffers), never collected.
 */
import { BackyError } from '@backy/core/source';

export type RbdDiffRecord =
  | { type: 'from-snap'; name: string }
  | { type: 'to-snap'; name: string }
  | { type: 'size'; size: number }
  /** A piece of a `w` record; one record can arrive as several consecutive pieces. */
  | { type: 'data'; offset: number; data: Buffer }
  | { type: 'zero'; offset: number; length: number }
  | { type: 'end' };

export const RBD_DIFF_V1_HEADER = 'rbd diff v1\n';
const HEADER = Buffer.from(RBD_DIFF_V1_HEADER, 'latin1');
/** Snapshot names are short; anything longer means the stream is garbage. */
const MAX_NAME_LENGTH = 4096;

type State = 'header' | 'tag' | 'name-length' | 'name' | 'size' | 'extent' | 'payload' | 'done';

function malformed(position: number, why: string): BackyError {
  return new BackyError('SOURCE_FAILED', `malformed rbd diff stream at byte ${position}: ${why}`);
}

/**
 * Push parser: feed input buffers with `push`, call `finish` at the end of the input. Records are
 * returned as they complete. `data` records point into the pushed buffer: copy before the next push.
 */
export class RbdDiffParser {
  private state: State = 'header';
  /** Bytes of the current fixed-size field collected so far. */
  private readonly field = Buffer.alloc(MAX_NAME_LENGTH);
  private fieldLength = 0;
  private need = HEADER.length;
  private tag = 0;
  private position = 0;
  private size: number | null = null;
  private sawData = false;
  /** End offset of the previous data record: records must be ordered and must not overlap. */
  private previousEnd = 0;
  private payloadOffset = 0;
  private payloadRemaining = 0;

  /** Bytes consumed so far. */
  get bytesConsumed(): number {
    return this.position;
  }

  /** True once the end record has been read. */
  get complete(): boolean {
    return this.state === 'done';
  }

  push(chunk: Buffer): RbdDiffRecord[] {
    const records: RbdDiffRecord[] = [];
    let i = 0;
    while (i < chunk.length) {
      if (this.state === 'done') throw malformed(this.position, 'data after the end record');
      if (this.state === 'payload') {
        const n = Math.min(this.payloadRemaining, chunk.length - i);
        records.push({ type: 'data', offset: this.payloadOffset, data: chunk.subarray(i, i + n) });
        i += n;
        this.position += n;
        this.payloadOffset += n;
        this.payloadRemaining -= n;
        if (this.payloadRemaining === 0) this.expect('tag', 1);
        continue;
      }
      const n = Math.min(this.need - this.fieldLength, chunk.length - i);
      chunk.copy(this.field, this.fieldLength, i, i + n);
      this.fieldLength += n;
      i += n;
      this.position += n;
      if (this.fieldLength === this.need) this.completeField(records);
    }
    return records;
  }

  /** Call at the end of the input: throws unless the stream ended with its end record. */
  finish(): void {
    if (this.state === 'done') return;
    const where =
      this.state === 'header'
        ? 'in the header'
        : this.state === 'payload'
          ? 'inside a data record'
          : 'before the end record';
    throw new BackyError(
      'SOURCE_FAILED',
      `truncated rbd diff stream: input ended at byte ${this.position} ${where}`,
    );
  }

  private expect(state: State, need: number): void {
    this.state = state;
    this.need = need;
    this.fieldLength = 0;
  }

  /** Position of the first byte of the current field, for error messages. */
  private get fieldStart(): number {
    return this.position - this.fieldLength;
  }

  private readU64(offset: number, what: string): number {
    const value = this.field.readBigUInt64LE(offset);
    if (value > BigInt(Number.MAX_SAFE_INTEGER))
      throw malformed(this.fieldStart + offset, `${what} ${value} is out of range`);
    return Number(value);
  }

  private completeField(records: RbdDiffRecord[]): void {
    switch (this.state) {
      case 'header': {
        if (!this.field.subarray(0, HEADER.length).equals(HEADER)) {
          const seen = this.field.subarray(0, HEADER.length).toString('latin1');
          if (seen.startsWith('rbd diff v')) {
            throw new BackyError(
              'SOURCE_FAILED',
              `unsupported rbd diff stream version ${JSON.stringify(seen.trim())}; expected "rbd diff v1"`,
            );
          }
          throw malformed(0, `not an rbd diff v1 stream (starts with ${JSON.stringify(seen)})`);
        }
        this.expect('tag', 1);
        return;
      }
      case 'tag': {
        this.tag = this.field[0]!;
        const tag = String.fromCharCode(this.tag);
        if ((tag === 'f' || tag === 't' || tag === 's') && this.sawData) {
          throw malformed(this.fieldStart, `metadata record '${tag}' after data records`);
        }
        if (tag === 'f' || tag === 't') this.expect('name-length', 4);
        else if (tag === 's') this.expect('size', 8);
        else if (tag === 'w' || tag === 'z') {
          if (this.size == null)
            throw malformed(this.fieldStart, `data record '${tag}' before the size record`);
          this.sawData = true;
          this.expect('extent', 16);
        } else if (tag === 'e') {
          records.push({ type: 'end' });
          this.expect('done', 0);
        } else
          throw malformed(this.fieldStart, `unknown record tag 0x${this.tag.toString(16).padStart(2, '0')}`);
        return;
      }
      case 'name-length': {
        const length = this.field.readUInt32LE(0);
        if (length > MAX_NAME_LENGTH) throw malformed(this.fieldStart, `snapshot name of ${length} bytes`);
        if (length === 0) {
          records.push(this.tag === 0x66 ? { type: 'from-snap', name: '' } : { type: 'to-snap', name: '' });
          this.expect('tag', 1);
        } else this.expect('name', length);
        return;
      }
      case 'name': {
        const name = this.field.subarray(0, this.need).toString('utf8');
        records.push(this.tag === 0x66 ? { type: 'from-snap', name } : { type: 'to-snap', name });
        this.expect('tag', 1);
        return;
      }
      case 'size': {
        if (this.size != null) throw malformed(this.fieldStart, 'second size record');
        this.size = this.readU64(0, 'image size');
        records.push({ type: 'size', size: this.size });
        this.expect('tag', 1);
        return;
      }
      case 'extent': {
        const offset = this.readU64(0, 'offset');
        const length = this.readU64(8, 'length');
        const start = this.fieldStart - 1;
        if (offset + length > this.size!) {
          throw malformed(start, `record [${offset}, +${length}) extends beyond the image size ${this.size}`);
        }
        if (offset < this.previousEnd) {
          throw malformed(
            start,
            `record at offset ${offset} overlaps or precedes the previous one (ending at ${this.previousEnd})`,
          );
        }
        this.previousEnd = offset + length;
        if (this.tag === 0x7a) {
          records.push({ type: 'zero', offset, length });
          this.expect('tag', 1);
        } else if (length === 0) {
          this.expect('tag', 1);
        } else {
          this.payloadOffset = offset;
          this.payloadRemaining = length;
          this.state = 'payload';
          this.fieldLength = 0;
        }
        return;
      }
      default:
        throw new Error(`parser in unexpected state ${this.state}`);
    }
  }
}

/** Parses an rbd diff v1 stream from an async byte source, yielding records as they complete. */
export async function* parseRbdDiff(
  input: AsyncIterable<Buffer | Uint8Array | string> | Iterable<Buffer | Uint8Array | string>,
): AsyncGenerator<RbdDiffRecord> {
  const parser = new RbdDiffParser();
  for await (const chunk of input) {
    const buffer =
      typeof chunk === 'string'
        ? Buffer.from(chunk, 'latin1')
        : Buffer.isBuffer(chunk)
          ? chunk
          : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    yield* parser.push(buffer);
  }
  parser.finish();
}

/** Builds an rbd diff v1 stream from records; for tests and tools (data records whole, not in pieces). */
export function encodeRbdDiff(records: RbdDiffRecord[]): Buffer {
  const parts: Buffer[] = [HEADER];
  const u64 = (value: number) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(value));
    return b;
  };
  for (const record of records) {
    switch (record.type) {
      case 'from-snap':
      case 'to-snap': {
        const name = Buffer.from(record.name, 'utf8');
        const length = Buffer.alloc(4);
        length.writeUInt32LE(name.length);
        parts.push(Buffer.from(record.type === 'from-snap' ? 'f' : 't'), length, name);
        break;
      }
      case 'size':
        parts.push(Buffer.from('s'), u64(record.size));
        break;
      case 'data':
        parts.push(Buffer.from('w'), u64(record.offset), u64(record.data.length), record.data);
        break;
      case 'zero':
        parts.push(Buffer.from('z'), u64(record.offset), u64(record.length));
        break;
      case 'end':
        parts.push(Buffer.from('e'));
        break;
    }
  }
  return Buffer.concat(parts);
}
