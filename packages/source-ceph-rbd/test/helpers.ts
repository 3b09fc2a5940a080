/** Helpers for tests against the real Ceph test cluster started by global-setup.ts. */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Archive, type RevisionReader } from '@backy/core';
import pino from 'pino';
import { inject } from 'vitest';
import { encodeRbdDiff, type RbdDiffRecord } from '../src/diff-stream.js';

export const ceph = inject('ceph');
/** Why the cluster tests are skipped, or null when a cluster is running. */
export const skipReason = ceph.skip;
export const conf = ceph.conf ?? '/nonexistent/ceph.conf';
export const POOL = 'rbd';
export const MiB = 1024 * 1024;
export const CHUNK = 4 * MiB;
export const logger = pino({ level: process.env.BACKY_TEST_LOG ?? 'silent' });

/** Runs a tool without a shell; resolves with its stdout, rejects with its stderr. */
export function runTool(command: string, args: string[], input?: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(Buffer.concat(out));
      else reject(new Error(`${command} ${args.join(' ')} exited ${code}: ${err.trim()}`));
    });
    child.stdin.on('error', () => {});
    child.stdin.end(input);
  });
}

export const rbd = (...args: string[]) => runTool('rbd', ['--conf', conf, ...args]);

let counter = 0;
export function uniqueImage(prefix: string): string {
  return `${prefix}-${process.pid}-${++counter}-${randomBytes(3).toString('hex')}`;
}

export async function createImage(image: string, size: number): Promise<void> {
  await rbd('create', '--size', `${size}B`, `${POOL}/${image}`);
}

export async function imageSize(image: string): Promise<number> {
  return JSON.parse((await rbd('info', '--format', 'json', `${POOL}/${image}`)).toString()).size;
}

/** Writes `data` at `offset` of the image's head. */
export async function writeImage(image: string, offset: number, data: Buffer): Promise<void> {
  await importDiffRaw(image, [
    { type: 'size', size: await imageSize(image) },
    { type: 'data', offset, data },
  ]);
}

/** Applies diff records (without the end record) to the image's head with `rbd import-diff`; a size record resizes it. */
export async function importDiffRaw(image: string, records: RbdDiffRecord[]): Promise<void> {
  await runTool(
    'rbd',
    ['--conf', conf, 'import-diff', '--no-progress', '-', `${POOL}/${image}`],
    encodeRbdDiff([...records, { type: 'end' }]),
  );
}

/** Runs qemu-io commands (e.g. `write -z 0 4M`, `discard 4M 8M`) on the image's head through librbd. */
export async function qemuIo(image: string, ...commands: string[]): Promise<void> {
  const args = ['-f', 'raw'];
  for (const c of commands) args.push('-c', c);
  await runTool('qemu-io', [...args, `rbd:${POOL}/${image}:conf=${conf}`]);
}

export async function exportImage(spec: string): Promise<Buffer> {
  return rbd('export', '--no-progress', `${POOL}/${spec}`, '-');
}

export async function snapshots(image: string): Promise<{ name: string; protected: string }[]> {
  return JSON.parse((await rbd('snap', 'ls', '--format', 'json', `${POOL}/${image}`)).toString());
}

export async function removeImage(image: string): Promise<void> {
  for (const s of await snapshots(image).catch(() => [])) {
    if (s.protected === 'true') await rbd('snap', 'unprotect', `${POOL}/${image}@${s.name}`);
  }
  await rbd('snap', 'purge', '--no-progress', `${POOL}/${image}`).catch(() => {});
  await rbd('rm', '--no-progress', `${POOL}/${image}`).catch(() => {});
}

export async function newArchive(
  type = 'ceph-rbd',
  extra: Record<string, unknown> = {},
): Promise<{ dir: string; archive: Archive }> {
  const dir = await mkdtemp(join(tmpdir(), 'backy-rbd-archive-'));
  const archive = await Archive.init(join(dir, 'archive'), {
    source: { type, pool: POOL, image: 'x', ...extra },
  });
  return { dir, archive };
}

export async function revisionContent(reader: RevisionReader): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let i = 0; i < reader.chunkCount; i++) parts.push(await reader.read(i));
  return Buffer.concat(parts);
}

/** A logger that keeps its records, to check what a backup logged. */
export function capturingLogger(): { logger: pino.Logger; records: { level: number; msg: string }[] } {
  const records: { level: number; msg: string }[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => records.push(JSON.parse(line)) });
  return { logger, records };
}
