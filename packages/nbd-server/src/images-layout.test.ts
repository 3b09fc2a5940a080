import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Archive } from '@backy/core';
import { CMD } from '@backy/nbd-protocol';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { archiveExports } from './exports.js';
import { NbdServer } from './server.js';
import { TestClient } from './test-client.js';
import { backupImage, CHUNK, pseudoRandom, writeImage } from './test-helpers.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('an archive of the images layout', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'backy-nbd-images-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('is served over NBD like any other archive, zero chunks as holes', async () => {
    const archive = await Archive.init(join(dir, 'archive'), { source: { type: 'test' }, layout: 'images' });
    // 16 chunks: random data with two zero chunks (5 and 11).
    const v1 = pseudoRandom(16 * CHUNK, 11);
    v1.fill(0, 5 * CHUNK, 6 * CHUNK);
    v1.fill(0, 11 * CHUNK, 12 * CHUNK);
    await writeImage(join(dir, 'vm.img'), v1);
    const rev = await backupImage(archive, join(dir, 'vm.img'), ['manual:t']);
    expect(rev.backend_type).toBe('images');
    const server = new NbdServer({ exports: archiveExports(archive), logger: pino({ level: 'silent' }) });
    const { port } = await server.listen(0, '127.0.0.1');
    const c = await TestClient.connect(port);
    try {
      await c.go('last', { structured: true, allocation: true });
      expect(sha(await c.read(0, 8 * CHUNK))).toBe(sha(v1.subarray(0, 8 * CHUNK)));
      expect(sha(await c.read(8 * CHUNK, 8 * CHUNK))).toBe(sha(v1.subarray(8 * CHUNK)));
      c.request(CMD.BLOCK_STATUS, 5 * CHUNK, CHUNK);
      const [bs] = await c.readStructured();
      expect(bs!.payload.readUInt32BE(8)).toBe(3); // hole | zero
    } finally {
      c.close();
      await server.close();
    }
  });
});
