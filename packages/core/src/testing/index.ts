/**
 * The conformance suite every source package runs against its real backend:
 *
 *   testSource({ name: 'file', makeFixture: async (initial) => ({ source, write, resize, content }) });
 *
 * It backs up, changes the data, backs up again, and checks each revision restores byte for byte.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Archive } from '../archive.js';
import { runBackup } from '../backup.js';
import { isBackyError } from '../errors.js';
import { restoreToPath } from '../restore.js';
import type { Revision } from '../revision.js';
import type { BackupSource } from '../source.js';
import { vmLikeData } from './helpers.js';

export * from './helpers.js';

export interface SourceFixture {
  /** A source that reads the fixture's data. */
  source: BackupSource;
  /** Overwrites `data.length` bytes at `offset` of the data the source reads. */
  write(offset: number, data: Buffer): Promise<void>;
  /** Grows (with zeros) or shrinks the data. */
  resize(size: number): Promise<void>;
  /** The data as the source holds it now. */
  content(): Promise<Buffer>;
  cleanup?(): Promise<void>;
}

export interface TestSourceOptions {
  name: string;
  /** Creates a fixture whose data is `initial`. */
  makeFixture(initial: Buffer): Promise<SourceFixture>;
  /** When set, the suite is skipped and this reason is printed. */
  skip?: string | null;
  /** Image sizes used are multiples of this (default 1 MiB, e.g. for block devices or RBD). */
  sizeUnit?: number;
}

const MiB = 1024 * 1024;

export function testSource(options: TestSourceOptions): void {
  const unit = options.sizeUnit ?? MiB;
  const logger = pino({ level: 'silent' });
  const suite = options.skip ? describe.skip : describe;
  if (options.skip) console.warn(`[conformance ${options.name}] skipped: ${options.skip}`);

  suite(`source conformance: ${options.name}`, () => {
    let dir: string;
    let fixture: SourceFixture;
    let archive: Archive;
    const restored: { rev: Revision; content: Buffer }[] = [];

    const backup = async (tags: string[], signal?: AbortSignal) =>
      runBackup(archive, fixture.source, { tags, force: true, logger, signal });
    const restore = async (rev: Revision) => {
      const target = join(dir, `restore-${rev.uuid}`);
      const reader = await archive.openReader(rev);
      await restoreToPath(reader, target, { force: true }).finally(() => reader.close());
      const data = await readFile(target);
      await rm(target);
      return data;
    };

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), `backy-conformance-${options.name}-`));
      fixture = await options.makeFixture(vmLikeData(12 * unit));
      archive = await Archive.init(join(dir, 'archive'), { source: { type: options.name } });
    });

    afterAll(async () => {
      await fixture?.cleanup?.();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('makes a full backup that restores byte for byte and is verified', async () => {
      const rev = await backup(['first']);
      expect(rev.trust).toBe('trusted');
      expect(rev.verification?.ok).toBe(true);
      expect(rev.verification?.chunks_checked).toBeGreaterThan(0);
      expect(rev.size).toBe(12 * unit);
      const expected = await fixture.content();
      expect((await restore(rev)).equals(expected)).toBe(true);
      restored.push({ rev, content: expected });
    });

    it('makes an incremental backup that writes only the changed chunks', async () => {
      await fixture.write(5 * unit + 123, Buffer.from('changed by the conformance suite'));
      await fixture.write(9 * unit, randomBytes(4096));
      const rev = await backup(['second']);
      const expected = await fixture.content();
      expect((await restore(rev)).equals(expected)).toBe(true);
      expect(rev.parent).toBe(restored[0]!.rev.uuid);
      expect(rev.stats.chunks_written).toBeGreaterThan(0);
      expect(rev.stats.chunks_written).toBeLessThanOrEqual(2);
      // The earlier revision is untouched.
      expect((await restore(restored[0]!.rev)).equals(restored[0]!.content)).toBe(true);
      restored.push({ rev, content: expected });
    });

    it('stores zeroed regions as zero chunks', async () => {
      await fixture.write(0, Buffer.alloc(8 * unit));
      const rev = await backup(['zeroed']);
      expect(rev.stats.chunks_zero).toBeGreaterThan(0);
      expect((await restore(rev)).equals(await fixture.content())).toBe(true);
    });

    it('follows the image when it grows and shrinks', async () => {
      await fixture.resize(15 * unit);
      await fixture.write(14 * unit, randomBytes(unit));
      const grown = await backup(['grown']);
      expect(grown.size).toBe(15 * unit);
      expect((await restore(grown)).equals(await fixture.content())).toBe(true);
      await fixture.resize(7 * unit);
      const shrunk = await backup(['shrunk']);
      expect(shrunk.size).toBe(7 * unit);
      expect((await restore(shrunk)).equals(await fixture.content())).toBe(true);
    });

    it('leaves no revision behind when a backup is aborted', async () => {
      const before = (await archive.revisions()).length;
      const controller = new AbortController();
      controller.abort();
      const error = await backup(['aborted'], controller.signal).catch((e) => e);
      expect(isBackyError(error, 'ABORTED')).toBe(true);
      expect((await archive.revisions()).length).toBe(before);
      expect((await archive.scan()).interrupted).toEqual([]);
      const after = await backup(['after-abort']);
      expect((await restore(after)).equals(await fixture.content())).toBe(true);
    });
  });
}
