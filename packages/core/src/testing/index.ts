/**
 * The conformance suite every source package runs against its real backend:
 *
 *   testSource({ definition, makeFixture: async (initial) => ({ options, write, resize, content }) });
 *
 * It checks the definition (type, options schema), backs up, changes the data, backs up again and
 * checks each revision restores byte for byte, at sizes that are not whole chunks, and it holds the
 * source to its contract: bytes read are reported, an abort stops a running backup, and `verify`
 * notices a revision that differs from the source.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { Archive } from '../archive/index.js';
import { runBackup } from '../backup.js';
import { isBackyError } from '../errors.js';
import { restoreToPath } from '../restore.js';
import type { Revision } from '../revision.js';
import type { RevisionWriter } from '../revision-io.js';
import type { BackupSource, SourceDefinition } from '../source/contract.js';
import { isSourceDefinition } from '../source/contract.js';
import { validateSourceOptions } from '../source/options.js';
import { MiB, vmLikeData } from './helpers.js';
import { afterAll, beforeAll, describe, expect, it } from './vitest.js';

export { type BackendFixture, type TestBackendOptions, testBackend } from './backend-suite.js';
export { encryptedStoreFixture, tempStoreKey } from './encrypted-store.js';
export * from './helpers.js';
export * from './main-fixtures.js';
export * from './storage.js';
export { type ChunkStoreFixture, type TestChunkStoreOptions, testChunkStore } from './store-suite.js';

export interface SourceFixture {
  /**
   * The source's options for this fixture, as a config's `source` section holds them (without
   * `type`). The suite validates them with the definition's `optionsSchema`.
   */
  options: Record<string, unknown>;
  /**
   * The source to test; by default `definition.create(options)`. Give one to add test hooks the
   * options cannot express.
   */
  source?: BackupSource;
  /** Overwrites `data.length` bytes at `offset` of the data the source reads. */
  write(offset: number, data: Buffer): Promise<void>;
  /** Grows (with zeros) or shrinks the data. */
  resize(size: number): Promise<void>;
  /** The data as the source holds it now. */
  content(): Promise<Buffer>;
  cleanup?(): Promise<void>;
}

export interface TestSourceOptions<Options = unknown> {
  /** The module's default export, as the CLI loads it. */
  definition: SourceDefinition<Options>;
  /** Names the suite; default: the definition's type. */
  name?: string;
  /** Creates a fixture whose data is `initial`. */
  makeFixture(initial: Buffer): Promise<SourceFixture>;
  /** When set, the suite is skipped and this reason is printed. */
  skip?: string | null;
  /**
   * Image sizes used are multiples of this (default 1 byte: sizes that end inside a chunk, and not on
   * a MiB boundary). Set it only where the backend cannot hold other sizes.
   */
  sizeUnit?: number;
  /**
   * The most chunks the source reads at once (default 8): after an abort it may still hand over the
   * ones already being read, and no more.
   */
  maxInFlight?: number;
}

export function testSource<Options>(options: TestSourceOptions<Options>): void {
  const { definition } = options;
  const name = options.name ?? (definition as SourceDefinition<Options> | null)?.type ?? 'unnamed source';
  const unit = options.sizeUnit ?? 1;
  const maxInFlight = options.maxInFlight ?? 8;
  /** `bytes` rounded up to the size unit: with the default unit, sizes that end inside a chunk. */
  const size = (bytes: number) => Math.ceil(Math.round(bytes) / unit) * unit;
  const logger = pino({ level: 'silent' });
  const suite = options.skip ? describe.skip : describe;
  if (options.skip) console.warn(`[conformance ${name}] skipped: ${options.skip}`);

  suite(`source conformance: ${name}`, () => {
    let dir: string;
    let fixture: SourceFixture;
    let source: BackupSource;
    let archive: Archive;
    const restored: { rev: Revision; content: Buffer }[] = [];

    const backupInto = async (target: Archive, from: BackupSource, tags: string[], signal?: AbortSignal) =>
      runBackup(target, from, { tags, force: true, logger, signal });
    const backup = (tags: string[], signal?: AbortSignal) => backupInto(archive, source, tags, signal);
    const freshArchive = (label: string) =>
      Archive.init(join(dir, `archive-${label}`), { source: { type: definition.type } });
    const restore = async (rev: Revision, from: Archive = archive) => {
      const target = join(dir, `restore-${rev.uuid}`);
      const reader = await from.openReader(rev);
      await restoreToPath(reader, target, { force: true }).finally(() => reader.close());
      const data = await readFile(target);
      await rm(target);
      return data;
    };

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), `backy-conformance-${name.replace(/[^\w.-]/g, '_')}-`));
      fixture = await options.makeFixture(vmLikeData(size(12.5 * MiB + 4321)));
      source =
        fixture.source ??
        definition.create(
          await validateSourceOptions(definition.optionsSchema, fixture.options, 'fixture options'),
          { logger },
        );
      archive = await freshArchive('main');
    });

    afterAll(async () => {
      await fixture?.cleanup?.();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('has a definition the CLI can load, whose options schema accepts the fixture and rejects nonsense', async () => {
      expect(isSourceDefinition(definition), 'default export made with defineSource').toBe(true);
      expect(typeof definition.type === 'string' && definition.type.length > 0).toBe(true);
      const validate = (value: unknown) =>
        validateSourceOptions(definition.optionsSchema, value, 'options').then(
          () => 'accepted',
          (error: unknown) => (error as Error).message,
        );
      expect(await validate(fixture.options)).toBe('accepted');
      // A schema that lets anything through turns every typo in a config into a silently ignored key.
      for (const nonsense of [null, 42, 'a string', [], { ...fixture.options, 'no-such-option': 1 }]) {
        const outcome = await validate(nonsense);
        expect(outcome, `options ${JSON.stringify(nonsense)} must be rejected`).not.toBe('accepted');
        expect(outcome).toMatch(/^options: /);
      }
    });

    it('makes a full backup that restores byte for byte, reports what it read and is verified', async () => {
      const rev = await backup(['first']);
      expect(rev.size).toBe(size(12.5 * MiB + 4321));
      expect(rev.stats.bytes_read, 'bytes read reported with ctx.reportRead').toBeGreaterThan(0);
      if (source.verify != null) {
        expect(rev.trust).toBe('trusted');
        expect(rev.verification?.ok).toBe(true);
        expect(rev.verification?.method).not.toBe('none');
        expect(rev.verification?.chunks_checked).toBeGreaterThan(0);
      } else {
        expect(rev.verification).toMatchObject({ method: 'none', chunks_checked: 0, ok: true });
      }
      const expected = await fixture.content();
      expect((await restore(rev)).equals(expected)).toBe(true);
      restored.push({ rev, content: expected });
    });

    it('makes an incremental backup that writes only the changed chunks', async () => {
      await fixture.write(5 * MiB + 123, Buffer.from('changed by the conformance suite'));
      await fixture.write(9 * MiB, randomBytes(4096));
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
      await fixture.write(0, Buffer.alloc(8 * MiB));
      const rev = await backup(['zeroed']);
      expect(rev.stats.chunks_zero).toBeGreaterThan(0);
      expect((await restore(rev)).equals(await fixture.content())).toBe(true);
    });

    it('follows the image when it grows and shrinks, to sizes that end inside a chunk', async () => {
      const grownSize = size(14.6 * MiB + 777);
      await fixture.resize(grownSize);
      await fixture.write(13 * MiB, randomBytes(grownSize - 13 * MiB));
      const grown = await backup(['grown']);
      expect(grown.size).toBe(grownSize);
      expect((await restore(grown)).equals(await fixture.content())).toBe(true);
      const shrunkSize = size(6.7 * MiB + 99);
      await fixture.resize(shrunkSize);
      const shrunk = await backup(['shrunk']);
      expect(shrunk.size).toBe(shrunkSize);
      expect((await restore(shrunk)).equals(await fixture.content())).toBe(true);
    });

    it('leaves no revision behind when a backup is aborted before it starts', async () => {
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

    it('stops a running backup soon after the abort signal', async () => {
      // Enough chunks that a source which ignores the signal writes far more than its reads in flight.
      const chunks = Math.max(24, 3 * maxInFlight);
      await fixture.resize(size(chunks * CHUNK - 1234));
      await fixture.write(0, randomBytes(size(chunks * CHUNK - 1234)));
      const target = await freshArchive('abort');
      const controller = new AbortController();
      let calls = 0;
      let afterAbort = 0;
      const spying = withWriter(source, (writer) =>
        spyWriter(writer, () => {
          calls++;
          if (controller.signal.aborted) afterAbort++;
          else controller.abort();
        }),
      );
      const error = await backupInto(target, spying, ['aborted'], controller.signal).catch((e) => e);
      expect(isBackyError(error, 'ABORTED')).toBe(true);
      expect(calls, 'the source wrote nothing before the abort').toBeGreaterThan(0);
      expect(
        afterAbort,
        `chunks the source handed the writer after the abort (of ${chunks}): it must watch ctx.signal`,
      ).toBeLessThanOrEqual(maxInFlight);
      expect(await target.revisions()).toEqual([]);
      expect((await target.scan()).interrupted).toEqual([]);
    });

    it('verifies a fresh revision against the source and distrusts one that differs', async () => {
      // Every chunk the source writes is stored with one byte flipped: a verify that compares nothing
      // (or always says ok) lets that revision through as trusted.
      const tamperedSize = size(6 * CHUNK + 4321);
      await fixture.resize(tamperedSize);
      await fixture.write(0, randomBytes(tamperedSize));
      const target = await freshArchive('tampered');
      const tampering = withWriter(source, (writer) =>
        spyWriter(
          writer,
          () => {},
          (data) => {
            data[0] = data[0]! ^ 0xff;
          },
        ),
      );
      const rev = await backupInto(target, tampering, ['tampered']);
      expect(rev.stats.bytes_read, 'a full backup reports every byte it read').toBeGreaterThanOrEqual(
        rev.size,
      );
      if (source.verify == null) {
        expect(rev.verification).toMatchObject({ method: 'none', ok: true });
        return;
      }
      expect(rev.verification?.ok, 'verify must compare the revision with the source').toBe(false);
      expect(rev.trust).toBe('distrusted');
      expect(rev.verification?.mismatches.length).toBeGreaterThan(0);
    });
  });
}

const CHUNK = 4 * MiB;

/** The source, with the writer each backup gets replaced by `wrap(writer)`. */
function withWriter(source: BackupSource, wrap: (writer: RevisionWriter) => RevisionWriter): BackupSource {
  return {
    backup: (ctx) => source.backup({ ...ctx, writer: wrap(ctx.writer) }),
    ...(source.verify != null ? { verify: (ctx) => source.verify!(ctx) } : {}),
    ...(source.finish != null ? { finish: (ctx) => source.finish!(ctx) } : {}),
  };
}

/** The writer, calling `onChunk` for every chunk the source writes and `alter` on its data. */
function spyWriter(
  writer: RevisionWriter,
  onChunk: () => void,
  alter?: (data: Buffer) => void,
): RevisionWriter {
  return new Proxy(writer, {
    get(target, property) {
      const value = Reflect.get(target, property, target);
      if (property === 'write')
        return (index: number, data: Buffer) => {
          onChunk();
          alter?.(data);
          return target.write(index, data);
        };
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}
