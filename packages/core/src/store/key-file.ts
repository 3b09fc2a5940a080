import { spawn } from 'node:child_process';
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  hkdfSync,
  randomBytes,
  scrypt as scryptCallback,
} from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { BackyError, ioError } from '../errors.js';

/**
 * An encrypted store's key file (see docs/storage.md, "Encryption"): versioned JSON holding 32 random
 * bytes, the master key, from which every key the store uses is derived (HKDF-SHA256), and the key's ID
 * (derived too, so a damaged key file is detected):
 *
 *   {"backy-key": 1, "id": "<16 hex digits>", "created": "<ISO time>", "key": "<base64>"}
 *
 * or, protected by a passphrase, with `passphrase` instead of `key`: the master key sealed with
 * AES-256-GCM under a key from scrypt (memory-hard: N=2^17, r=8, p=1, i.e. 128 MiB and about half a
 * second per try), the salt and nonce beside it:
 *
 *   "passphrase": {"kdf": "scrypt", "N": 131072, "r": 8, "p": 1, "salt": "<base64>",
 *                  "cipher": "aes-256-gcm", "nonce": "<base64>", "sealed": "<base64: key, then tag>"}
 */
export const KEY_FILE_VERSION = 1;
const MASTER_BYTES = 32;
/** scrypt's cost: 128 * N * r bytes of memory (128 MiB), beyond Node's default limit of 32 MiB. */
const SCRYPT = { N: 2 ** 17, r: 8, p: 1 } as const;
const SCRYPT_MAXMEM = 256 * 1024 * 1024;
const scrypt = promisify(scryptCallback) as (
  password: string,
  salt: Buffer,
  keylen: number,
  options: { N: number; r: number; p: number; maxmem: number },
) => Promise<Buffer>;

/** The environment variable a key file's passphrase is read from. */
export const PASSPHRASE_ENV = 'BACKY_KEY_PASSPHRASE';
/** The environment variable naming a file whose first line is the passphrase (restic's RESTIC_PASSWORD_FILE). */
export const PASSPHRASE_FILE_ENV = 'BACKY_PASSPHRASE_FILE';
/** The environment variable holding a shell command that prints the passphrase (RESTIC_PASSWORD_COMMAND). */
export const PASSPHRASE_COMMAND_ENV = 'BACKY_PASSPHRASE_COMMAND';

interface PassphraseSeal {
  kdf: 'scrypt';
  N: number;
  r: number;
  p: number;
  salt: string;
  cipher: 'aes-256-gcm';
  nonce: string;
  sealed: string;
}

interface KeyFileJson {
  'backy-key': number;
  id: string;
  created: string;
  key?: string;
  passphrase?: PassphraseSeal;
}

/** The keys an encrypted store uses, all derived from the master key of its key file. */
export interface StoreKey {
  /** The key's ID: 16 hex digits, derived from the key (reveals nothing about it). */
  readonly id: string;
  /** The key file it came from, for messages. */
  readonly file: string;
  /** Keys keyed BLAKE3: chunk names. */
  readonly nameKey: Buffer;
  /** AES-256-GCM: chunks, revision files and the key check. */
  readonly dataKey: Buffer;
}

const derive = (master: Buffer, info: string, length = 32) =>
  Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), `backy ${info} 1`, length));

const keyIdOf = (master: Buffer) => derive(master, 'key id', 8).toString('hex');

function storeKey(master: Buffer, file: string): StoreKey {
  return {
    id: keyIdOf(master),
    file,
    nameKey: derive(master, 'chunk names'),
    dataKey: derive(master, 'data'),
  };
}

const invalid = (file: string, why: string) =>
  new BackyError('CONFIG_INVALID', `${file}: not a backy key file (${why})`);

/** Parses and checks a key file's text (without opening a passphrase seal). */
export function parseKeyFile(text: string, file: string): KeyFileJson {
  let json: KeyFileJson;
  try {
    json = JSON.parse(text) as KeyFileJson;
  } catch {
    throw invalid(file, 'not JSON');
  }
  if (json == null || typeof json !== 'object') throw invalid(file, 'not a JSON object');
  if (json['backy-key'] !== KEY_FILE_VERSION)
    throw invalid(file, `version ${JSON.stringify(json['backy-key'])}, expected ${KEY_FILE_VERSION}`);
  if (typeof json.id !== 'string' || !/^[0-9a-f]{16}$/.test(json.id)) throw invalid(file, 'no key id');
  if ((json.key == null) === (json.passphrase == null))
    throw invalid(file, 'it must hold either "key" or "passphrase"');
  return json;
}

async function passphraseKey(passphrase: string, seal: Pick<PassphraseSeal, 'N' | 'r' | 'p'>, salt: Buffer) {
  return scrypt(passphrase, salt, 32, { N: seal.N, r: seal.r, p: seal.p, maxmem: SCRYPT_MAXMEM });
}

const sealAad = (id: string) => Buffer.from(`backy key file ${KEY_FILE_VERSION} ${id}`);

/** The master key of a parsed key file, opening its passphrase seal with `passphrase`. */
async function masterKeyOf(json: KeyFileJson, file: string, passphrase: () => Promise<string | null>) {
  let master: Buffer;
  if (json.key != null) {
    master = Buffer.from(json.key, 'base64');
  } else {
    const seal = json.passphrase!;
    if (seal.kdf !== 'scrypt' || seal.cipher !== 'aes-256-gcm')
      throw invalid(file, `unknown protection ${seal.kdf}/${seal.cipher}`);
    const secret = await passphrase();
    if (secret == null) {
      throw new BackyError(
        'CONFIG_INVALID',
        `${file} is protected by a passphrase: set store.encryption.passphrase-file, ${PASSPHRASE_FILE_ENV}, ${PASSPHRASE_COMMAND_ENV} or ${PASSPHRASE_ENV}`,
      );
    }
    const wrapKey = await passphraseKey(secret, seal, Buffer.from(seal.salt, 'base64'));
    const sealed = Buffer.from(seal.sealed, 'base64');
    const decipher = createDecipheriv('aes-256-gcm', wrapKey, Buffer.from(seal.nonce, 'base64'));
    decipher.setAAD(sealAad(json.id));
    decipher.setAuthTag(sealed.subarray(-16));
    try {
      master = Buffer.concat([decipher.update(sealed.subarray(0, -16)), decipher.final()]);
    } catch {
      throw new BackyError('CONFIG_INVALID', `${file}: wrong passphrase (or the key file is damaged)`);
    }
  }
  if (master.length !== MASTER_BYTES || keyIdOf(master) !== json.id)
    throw invalid(file, 'the key does not match its id: the file is damaged');
  return master;
}

/** Reads a passphrase file: its first line. */
export async function readPassphraseFile(path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw ioError(error, `reading passphrase file ${path}`);
  }
  const line = text.split(/\r?\n/)[0] ?? '';
  if (line === '') throw new BackyError('CONFIG_INVALID', `${path}: the passphrase file is empty`);
  return line;
}

/**
 * The passphrase from `passphraseFile` if given, else from the environment: `BACKY_PASSPHRASE_FILE`
 * (a file's first line), `BACKY_PASSPHRASE_COMMAND` (the first line a shell command prints) or
 * `BACKY_KEY_PASSPHRASE` (the passphrase itself); else null. More than one of the three set is refused
 * rather than one chosen silently (empty counts as unset).
 */
export async function passphraseFrom(
  passphraseFile: string | null | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string | null> {
  if (passphraseFile != null) return readPassphraseFile(passphraseFile);
  const set = [PASSPHRASE_FILE_ENV, PASSPHRASE_COMMAND_ENV, PASSPHRASE_ENV].filter(
    (name) => env[name] != null && env[name] !== '',
  );
  if (set.length > 1)
    throw new BackyError(
      'USAGE',
      `${set.join(' and ')} are set; set only one of them for the key's passphrase`,
    );
  const file = env[PASSPHRASE_FILE_ENV];
  if (file != null && file !== '') return readPassphraseFile(file);
  const command = env[PASSPHRASE_COMMAND_ENV];
  if (command != null && command !== '') return passphraseFromCommand(command);
  const value = env[PASSPHRASE_ENV];
  return value == null || value === '' ? null : value;
}

/**
 * The first line `command` prints on stdout, run by `/bin/sh -c` with the terminal's stdin and stderr
 * (so a password prompt works). A command that fails or prints nothing is an error naming the variable.
 */
async function passphraseFromCommand(command: string): Promise<string> {
  const failed = (why: string, cause?: unknown) =>
    new BackyError('CONFIG_INVALID', `${PASSPHRASE_COMMAND_ENV}: the command ${why}`, { cause });
  const output = await new Promise<string>((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', command], { stdio: ['inherit', 'pipe', 'inherit'] });
    const parts: Buffer[] = [];
    child.stdout.on('data', (part: Buffer) => parts.push(part));
    child.on('error', (error) => reject(failed(`cannot be started (${error.message})`, error)));
    child.on('close', (code, signal) => {
      if (code === 0) resolve(Buffer.concat(parts).toString('utf8'));
      else reject(failed(signal != null ? `was killed by ${signal}` : `exited with status ${code}`));
    });
  });
  const line = output.split(/\r?\n/)[0] ?? '';
  if (line === '') throw failed('printed no passphrase');
  return line;
}

/** Unlocked keys by key file text and passphrase: scrypt costs half a second and 128 MiB each time. */
const unlocked = new Map<string, Promise<Buffer>>();

export interface LoadKeyOptions {
  /** `<config>: store.encryption.key-file` for the message when the file is missing. */
  where: string;
  /** Where a protected key's passphrase comes from (default: `BACKY_KEY_PASSPHRASE`). */
  passphraseFile?: string | null;
}

/**
 * Loads a store's key file: a missing file is one line naming the config key and the file, and so is a
 * file that others than its owner may read or change (mode & 0o077), as ssh refuses such a private key:
 * a warning would go to a log nobody reads while the key that opens every backup lies open.
 */
export async function loadStoreKey(file: string, options: LoadKeyOptions): Promise<StoreKey> {
  let text: string;
  try {
    const handle = await open(file, 'r');
    try {
      const mode = (await handle.stat()).mode & 0o777;
      if ((mode & 0o077) !== 0) {
        throw new BackyError(
          'CONFIG_INVALID',
          `${options.where}: key file ${file} has mode 0${mode.toString(8)}: others than its owner may read or change it; chmod 600 ${file} (backy refuses such a key, as ssh does)`,
        );
      }
      text = await handle.readFile('utf8');
    } finally {
      await handle.close();
    }
  } catch (error) {
    if (error instanceof BackyError) throw error;
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new BackyError('CONFIG_INVALID', `${options.where}: key file ${file} does not exist`, {
        cause: error,
      });
    }
    throw ioError(error, `reading key file ${file}`);
  }
  const json = parseKeyFile(text, file);
  if (json.key != null) return storeKey(await masterKeyOf(json, file, async () => null), file);
  const passphrase = await passphraseFrom(options.passphraseFile);
  const cacheKey = `${text}\0${createHash('sha256')
    .update(passphrase ?? '')
    .digest('hex')}`;
  let master = unlocked.get(cacheKey);
  if (master == null) {
    master = masterKeyOf(json, file, async () => passphrase);
    unlocked.set(cacheKey, master);
    master.catch(() => unlocked.delete(cacheKey));
  }
  return storeKey(await master, file);
}

/** A new key file's text: a random master key, protected by `passphrase` when given. */
export async function newKeyFile(passphrase: string | null, now = new Date()): Promise<string> {
  const master = randomBytes(MASTER_BYTES);
  const id = keyIdOf(master);
  const json: KeyFileJson = { 'backy-key': KEY_FILE_VERSION, id, created: now.toISOString() };
  if (passphrase == null) {
    json.key = master.toString('base64');
  } else {
    const salt = randomBytes(16);
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', await passphraseKey(passphrase, SCRYPT, salt), nonce);
    cipher.setAAD(sealAad(id));
    const sealed = Buffer.concat([cipher.update(master), cipher.final(), cipher.getAuthTag()]);
    json.passphrase = {
      kdf: 'scrypt',
      ...SCRYPT,
      salt: salt.toString('base64'),
      cipher: 'aes-256-gcm',
      nonce: nonce.toString('base64'),
      sealed: sealed.toString('base64'),
    };
  }
  return `${JSON.stringify(json, null, 2)}\n`;
}

/** Writes a key file with mode 0600; refuses to overwrite an existing file. */
export async function writeKeyFile(path: string, text: string): Promise<void> {
  const handle = await open(path, 'wx', 0o600).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'EEXIST')
      throw new BackyError('TARGET_EXISTS', `${path} already exists; refusing to overwrite a key file`);
    throw ioError(error, `creating key file ${path}`);
  });
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

// The paper form of a key file (`backy key export`/`import`): the key file's JSON in base32 (letters
// and the digits 2-7: no 0/O or 1/l to confuse when typing it back), in numbered lines of 8 groups of 4,
// each with 4 check digits (of its number and content, so a typo or a swapped line names its line),
// and a last line with a check of the whole.

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const GROUPS_PER_LINE = 8;
const GROUP = 4;
const PAPER_HEADER = 'backy key file';

function base32(data: Buffer): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of data) {
    value = ((value << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

function unbase32(text: string): Buffer | null {
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const char of text) {
    const digit = BASE32.indexOf(char);
    if (digit < 0) return null;
    value = ((value << 5) | digit) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

const checkDigits = (what: string, length = 4) =>
  base32(createHash('sha256').update(what).digest()).slice(0, length);

/** A key file's text in the paper form, checked to be a key file first. */
export function exportKeyFile(text: string, file: string): string {
  const json = parseKeyFile(text, file);
  const body = base32(Buffer.from(JSON.stringify(json)));
  const perLine = GROUPS_PER_LINE * GROUP;
  const lines = [
    `${PAPER_HEADER} ${KEY_FILE_VERSION}, key ${json.id}${json.passphrase != null ? ', passphrase-protected' : ''}`,
  ];
  for (let i = 0, n = 1; i < body.length; i += perLine, n++) {
    const part = body.slice(i, i + perLine);
    const groups = part.match(new RegExp(`.{1,${GROUP}}`, 'g'))!.join(' ');
    lines.push(
      `${String(n).padStart(2)}: ${groups.padEnd(perLine + GROUPS_PER_LINE - 1)}  ${checkDigits(`${n}:${part}`)}`,
    );
  }
  lines.push(`end: ${checkDigits(body, 8)}`);
  return `${lines.join('\n')}\n`;
}

/**
 * A key file's text from its paper form (as `exportKeyFile` prints it, typed back in any case and
 * spacing). A line that does not match its check digits is named.
 */
export function importKeyFile(paper: string, where = 'the key'): string {
  const fail = (why: string) => new BackyError('USAGE', `${where}: ${why}`);
  let body = '';
  let next = 1;
  let end: string | null = null;
  for (const raw of paper.split(/\r?\n/)) {
    const line = raw.trim().replace(/\s+/g, ' ').toUpperCase();
    if (line === '' || line.startsWith(PAPER_HEADER.toUpperCase())) continue;
    const match = /^(\d+|END)\s*:\s*(.*)$/.exec(line);
    if (match == null) throw fail(`cannot read the line ${JSON.stringify(raw.trim())}`);
    if (match[1] === 'END') {
      end = match[2]!.replace(/\s+/g, '');
      break;
    }
    const n = Number(match[1]);
    if (n !== next) throw fail(`line ${next} expected, found line ${n}`);
    const text = match[2]!.replace(/\s+/g, '');
    const part = text.slice(0, -4);
    if (text.length < 5 || checkDigits(`${n}:${part}`) !== text.slice(-4))
      throw fail(`line ${n} does not match its check digits (a typing error in it?)`);
    body += part;
    next++;
  }
  if (end == null) throw fail('no "end:" line (is the key complete?)');
  if (checkDigits(body, 8) !== end) throw fail('the end line does not match the lines before it');
  const bytes = unbase32(body);
  if (bytes == null) throw fail('not in base32');
  const text = bytes.toString('utf8');
  parseKeyFile(text, where);
  return `${JSON.stringify(JSON.parse(text), null, 2)}\n`;
}
