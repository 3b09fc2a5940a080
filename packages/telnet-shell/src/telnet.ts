// The parts of the telnet protocol (RFC 854/855) a line-oriented server needs: strip and answer option
// negotiation, skip subnegotiation, honour erase/interrupt commands and end lines at CR LF, CR NUL or a
// bare LF (what `nc` sends).

export const IAC = 255;
export const DONT = 254;
export const DO = 253;
export const WONT = 252;
export const WILL = 251;
export const SB = 250;
export const EL = 248;
export const EC = 247;
export const AYT = 246;
export const IP = 244;
export const SE = 240;

const CR = 13;
const LF = 10;
const NUL = 0;
const BS = 8;
const DEL = 127;

export type TelnetEvent =
  | { type: 'line'; text: string }
  /** The line was longer than allowed; its content was dropped. */
  | { type: 'overflow' }
  /** Interrupt Process (Ctrl-C in telnet): the partial line is dropped. */
  | { type: 'interrupt' }
  /** Bytes to send back (negotiation answers). */
  | { type: 'reply'; data: Buffer };

type State = 'data' | 'cr' | 'iac' | 'option' | 'sb' | 'sb-iac';

/** Incremental decoder: feed it whatever the socket delivers, get lines and replies back. */
export class TelnetDecoder {
  private state: State = 'data';
  private command = 0;
  private line: number[] = [];
  private overflow = false;
  private readonly maxLineBytes: number;

  constructor(options: { maxLineBytes?: number } = {}) {
    this.maxLineBytes = options.maxLineBytes ?? 4096;
  }

  push(chunk: Uint8Array): TelnetEvent[] {
    const events: TelnetEvent[] = [];
    for (const byte of chunk) {
      switch (this.state) {
        case 'cr':
          this.state = 'data';
          // CR LF and CR NUL are one line end; anything else after a CR starts the next line.
          if (byte === LF || byte === NUL) break;
          this.data(byte, events);
          break;
        case 'data':
          this.data(byte, events);
          break;
        case 'iac':
          this.state = 'data';
          if (byte === IAC) this.append(IAC);
          else if (byte === WILL || byte === WONT || byte === DO || byte === DONT) {
            this.command = byte;
            this.state = 'option';
          } else if (byte === SB) this.state = 'sb';
          else if (byte === EC) this.line.pop();
          else if (byte === EL) this.line = [];
          else if (byte === IP) {
            this.line = [];
            this.overflow = false;
            events.push({ type: 'interrupt' });
          } else if (byte === AYT) events.push({ type: 'reply', data: Buffer.from('\r\n[backy: yes]\r\n') });
          // NOP, DM, BRK, AO, GA and unknown commands carry nothing for us.
          break;
        case 'option':
          this.state = 'data';
          // We enable no options: refuse every offer and request, and stay silent on refusals
          // (answering those is what makes negotiation loop).
          if (this.command === WILL) events.push({ type: 'reply', data: Buffer.from([IAC, DONT, byte]) });
          else if (this.command === DO) events.push({ type: 'reply', data: Buffer.from([IAC, WONT, byte]) });
          break;
        case 'sb':
          if (byte === IAC) this.state = 'sb-iac';
          break;
        case 'sb-iac':
          this.state = byte === SE ? 'data' : 'sb';
          break;
      }
    }
    return events;
  }

  private data(byte: number, events: TelnetEvent[]): void {
    if (byte === IAC) {
      this.state = 'iac';
    } else if (byte === CR || byte === LF) {
      if (byte === CR) this.state = 'cr';
      if (this.overflow) events.push({ type: 'overflow' });
      else events.push({ type: 'line', text: cleanLine(this.line) });
      this.line = [];
      this.overflow = false;
    } else if (byte === BS || byte === DEL) {
      this.line.pop();
    } else if (byte !== NUL) {
      this.append(byte);
    }
  }

  private append(byte: number): void {
    if (this.overflow) return;
    if (this.line.length >= this.maxLineBytes) {
      this.overflow = true;
      this.line = [];
      return;
    }
    this.line.push(byte);
  }
}

/** UTF-8 with invalid bytes replaced, control characters dropped, tabs as spaces, trimmed. */
function cleanLine(bytes: number[]): string {
  return (
    Buffer.from(bytes)
      .toString('utf8')
      .replace(/\t/g, ' ')
      // biome-ignore lint/suspicious/noControlCharactersInRegex: removing control characters is the point
      .replace(/[\u0000-\u001f\u007f-\u009f]/g, '')
      .trim()
  );
}
