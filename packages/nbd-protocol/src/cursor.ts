import { MAX_STRING } from './constants.js';
import { OptionSyntaxError } from './errors.js';

/** A cursor over option data that throws OptionSyntaxError instead of reading past the end. */
export class Cursor {
  private pos = 0;
  constructor(private readonly b: Buffer) {}
  u16(): number {
    this.need(2);
    const v = this.b.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.b.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  string(length: number): string {
    if (length > MAX_STRING) throw new OptionSyntaxError(`string of ${length} bytes exceeds ${MAX_STRING}`);
    this.need(length);
    const s = this.b.toString('utf8', this.pos, this.pos + length);
    this.pos += length;
    return s;
  }
  end(): void {
    if (this.pos !== this.b.length)
      throw new OptionSyntaxError(`${this.b.length - this.pos} unexpected trailing bytes`);
  }
  private need(n: number): void {
    if (this.pos + n > this.b.length) throw new OptionSyntaxError('option data is too short');
  }
}
