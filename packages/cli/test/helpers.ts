import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../bin/backy.js', import.meta.url));
const DIST = fileURLToPath(new URL('../dist/index.js', import.meta.url));

if (!existsSync(DIST)) {
  throw new Error(
    `the backy binary is not built (${DIST} missing): run \`pnpm build\` first (the root \`pnpm test\` does)`,
  );
}

export interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built `backy` binary like a user would, without a terminal. */
export function backy(
  args: string[],
  options: { cwd?: string; input?: Buffer | string; env?: NodeJS.ProcessEnv } = {},
): Result {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: options.cwd,
    input: options.input,
    env: { ...process.env, ...options.env },
    maxBuffer: 1024 * 1024 * 1024,
    // A hung command fails its test (status null) instead of blocking the test worker for good.
    timeout: 120_000,
    killSignal: 'SIGKILL',
  });
  return { code: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** Like `backy`, with stdout as raw bytes (for `restore -`). */
export function backyRaw(
  args: string[],
  cwd?: string,
): { code: number | null; stdout: Buffer; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, maxBuffer: 1024 * 1024 * 1024 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr.toString() };
}

export function backyAsync(args: string[], cwd?: string): ChildProcess {
  return spawn(process.execPath, [BIN, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
}

export async function tempDir(): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), 'backy-e2e-'));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

/** Asserts the shape of a user-facing error: one line, prefixed, no stack trace. */
export function oneLineError(result: Result): string {
  const lines = result.stderr.trim().split('\n');
  if (lines.length !== 1 || !lines[0]!.startsWith('backy: error: ') || /\n\s+at /.test(result.stderr)) {
    throw new Error(`expected a one-line error, got:\n${result.stderr}`);
  }
  return lines[0]!;
}

/** Skip checks against the one list of test tools (tools/test-env/test-tools.txt). */
export { missingTools, skipWithout } from '@backy/test-env';

export const isRoot = process.getuid?.() === 0;

/** Flips a byte of the stored chunk `index` of revision `id` (chunked layout); returns the chunk's hash. */
export async function damageChunkOf(archive: string, id: string, index: number): Promise<string> {
  const map = await readFile(join(archive, `${id}.map`));
  const hash = map.subarray(32 + index * 32, 64 + index * 32).toString('hex');
  const path = join(archive, 'chunks', hash.slice(0, 2), hash);
  const bytes = await readFile(path);
  bytes[bytes.length - 1]! ^= 0xff;
  await chmod(path, 0o644);
  await writeFile(path, bytes);
  return hash;
}

/** A TCP port on 127.0.0.1 that was free a moment ago (for a daemon's telnet shell). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Polls `probe` every `everyMs` until it returns something truthy, and returns that; fails naming `what`. */
export async function until<T>(
  what: string,
  probe: () => Promise<T | null | false | undefined> | T | null | false | undefined,
  timeoutMs = 30_000,
  everyMs = 100,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
