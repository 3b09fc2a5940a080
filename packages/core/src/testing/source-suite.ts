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
  const suite = options.skip ? describe.skip : describe;
  if (options.skip) console.warn(`[conformance ${name}] skipped: ${options.skip}`);

  suite(`source conformance: ${name}`, () => {
    const run = new SourceSuiteRun(options, name);
    beforeAll(() => run.start());
    afterAll(() => run.stop());
    // In this order: each check builds on the data and the revisions the ones before it left.
    testDefinition(run);
    testBackups(run);
    testAborts(run);
    testVerify(run);
  });
}

/** One run of the suite: what its checks share, set up before the first and removed after the last. */
class SourceSuiteRun<Options> {
  dir!: string;
  fixture!: SourceFixture;
  source!: BackupSource;
  archive!: Archive;
  /** The revisions of the backups so far, with the content each must restore. */
  readonly restored: { rev: Revision; content: Buffer }[] = [];
  readonly definition: SourceDefinition<Options>;
  readonly maxInFlight: number;
  private readonly options: TestSourceOptions<Options>;
  private readonly name: string;
  private readonly unit: number;
  private readonly logger = pino({ level: 'silent' });

  constructor(options: TestSourceOptions<Options>, name: string) {
    this.options = options;
    this.name = name;
    this.definition = options.definition;
    this.unit = options.sizeUnit ?? 1;
    this.maxInFlight = options.maxInFlight ?? 8;
  }

  /** `bytes` rounded up to the size unit: with the default unit, sizes that end inside a chunk. */
  size(bytes: number): number {
    return Math.ceil(Math.round(bytes) / this.unit) * this.unit;
  }

  async start(): Promise<void> {
    this.dir = await mkdtemp(join(tmpdir(), `backy-conformance-${this.name.replace(/[^\w.-]/g, '_')}-`));
    this.fixture = await this.options.makeFixture(vmLikeData(this.size(12.5 * MiB + 4321)));
    this.source =
      this.fixture.source ??
      this.definition.create(
        await validateSourceOptions(this.definition.optionsSchema, this.fixture.options, 'fixture options'),
        { logger: this.logger },
      );
    this.archive = await this.freshArchive('main');
  }

  async stop(): Promise<void> {
    await this.fixture?.cleanup?.();
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }

  backupInto(target: Archive, from: BackupSource, tags: string[], signal?: AbortSignal): Promise<Revision> {
    return runBackup(target, from, { tags, force: true, logger: this.logger, signal });
  }

  backup(tags: string[], signal?: AbortSignal): Promise<Revision> {
    return this.backupInto(this.archive, this.source, tags, signal);
  }

  freshArchive(label: string): Promise<Archive> {
    return Archive.init(join(this.dir, `archive-${label}`), { source: { type: this.definition.type } });
  }

  async restore(rev: Revision, from: Archive = this.archive): Promise<Buffer> {
    const target = join(this.dir, `restore-${rev.uuid}`);
    const reader = await from.openReader(rev);
    await restoreToPath(reader, target, { force: true }).finally(() => reader.close());
    const data = await readFile(target);
    await rm(target);
    return data;
  }
}

/** The definition the CLI loads, and its options schema. */
function testDefinition(run: SourceSuiteRun<unknown>): void {
  it('has a definition the CLI can load, whose options schema accepts the fixture and rejects nonsense', async () => {
    expect(isSourceDefinition(run.definition), 'default export made with defineSource').toBe(true);
    expect(typeof run.definition.type === 'string' && run.definition.type.length > 0).toBe(true);
    const validate = (value: unknown) =>
      validateSourceOptions(run.definition.optionsSchema, value, 'options').then(
        () => 'accepted',
        (error: unknown) => (error as Error).message,
      );
    expect(await validate(run.fixture.options)).toBe('accepted');
    // A schema that lets anything through turns every typo in a config into a silently ignored key.
    for (const nonsense of [null, 42, 'a string', [], { ...run.fixture.options, 'no-such-option': 1 }]) {
      const outcome = await validate(nonsense);
      expect(outcome, `options ${JSON.stringify(nonsense)} must be rejected`).not.toBe('accepted');
      expect(outcome).toMatch(/^options: /);
    }
  });
}

/** A full backup, an incremental one, zeroed regions, and an image that grows and shrinks. */
function testBackups(run: SourceSuiteRun<unknown>): void {
  it('makes a full backup that restores byte for byte, reports what it read and is verified', async () => {
    const rev = await run.backup(['first']);
    expect(rev.size).toBe(run.size(12.5 * MiB + 4321));
    expect(rev.stats.bytes_read, 'bytes read reported with ctx.reportRead').toBeGreaterThan(0);
    if (run.source.verify != null) {
      expect(rev.trust).toBe('trusted');
      expect(rev.verification?.ok).toBe(true);
      expect(rev.verification?.method).not.toBe('none');
      expect(rev.verification?.chunks_checked).toBeGreaterThan(0);
    } else {
      expect(rev.verification).toMatchObject({ method: 'none', chunks_checked: 0, ok: true });
    }
    const expected = await run.fixture.content();
    expect((await run.restore(rev)).equals(expected)).toBe(true);
    run.restored.push({ rev, content: expected });
  });

  it('makes an incremental backup that writes only the changed chunks', async () => {
    await run.fixture.write(5 * MiB + 123, Buffer.from('changed by the conformance suite'));
    await run.fixture.write(9 * MiB, randomBytes(4096));
    const rev = await run.backup(['second']);
    const expected = await run.fixture.content();
    expect((await run.restore(rev)).equals(expected)).toBe(true);
    expect(rev.parent).toBe(run.restored[0]!.rev.uuid);
    expect(rev.stats.chunks_written).toBeGreaterThan(0);
    expect(rev.stats.chunks_written).toBeLessThanOrEqual(2);
    // The earlier revision is untouched.
    expect((await run.restore(run.restored[0]!.rev)).equals(run.restored[0]!.content)).toBe(true);
    run.restored.push({ rev, content: expected });
  });

  it('stores zeroed regions as zero chunks', async () => {
    await run.fixture.write(0, Buffer.alloc(8 * MiB));
    const rev = await run.backup(['zeroed']);
    expect(rev.stats.chunks_zero).toBeGreaterThan(0);
    expect((await run.restore(rev)).equals(await run.fixture.content())).toBe(true);
  });

  it('follows the image when it grows and shrinks, to sizes that end inside a chunk', async () => {
    const grownSize = run.size(14.6 * MiB + 777);
    await run.fixture.resize(grownSize);
    await run.fixture.write(13 * MiB, randomBytes(grownSize - 13 * MiB));
    const grown = await run.backup(['grown']);
    expect(grown.size).toBe(grownSize);
    expect((await run.restore(grown)).equals(await run.fixture.content())).toBe(true);
    const shrunkSize = run.size(6.7 * MiB + 99);
    await run.fixture.resize(shrunkSize);
    const shrunk = await run.backup(['shrunk']);
    expect(shrunk.size).toBe(shrunkSize);
    expect((await run.restore(shrunk)).equals(await run.fixture.content())).toBe(true);
  });
}

/** An abort before a backup starts, and one while it runs. */
function testAborts(run: SourceSuiteRun<unknown>): void {
  it('leaves no revision behind when a backup is aborted before it starts', async () => {
    const before = (await run.archive.revisions()).length;
    const controller = new AbortController();
    controller.abort();
    const error = await run.backup(['aborted'], controller.signal).catch((e) => e);
    expect(isBackyError(error, 'ABORTED')).toBe(true);
    expect((await run.archive.revisions()).length).toBe(before);
    expect((await run.archive.scan()).interrupted).toEqual([]);
    const after = await run.backup(['after-abort']);
    expect((await run.restore(after)).equals(await run.fixture.content())).toBe(true);
  });

  it('stops a running backup soon after the abort signal', async () => {
    // Enough chunks that a source which ignores the signal writes far more than its reads in flight.
    const chunks = Math.max(24, 3 * run.maxInFlight);
    await run.fixture.resize(run.size(chunks * CHUNK - 1234));
    await run.fixture.write(0, randomBytes(run.size(chunks * CHUNK - 1234)));
    const target = await run.freshArchive('abort');
    const controller = new AbortController();
    let calls = 0;
    let afterAbort = 0;
    const spying = withWriter(run.source, (writer) =>
      spyWriter(writer, () => {
        calls++;
        if (controller.signal.aborted) afterAbort++;
        else controller.abort();
      }),
    );
    const error = await run.backupInto(target, spying, ['aborted'], controller.signal).catch((e) => e);
    expect(isBackyError(error, 'ABORTED')).toBe(true);
    expect(calls, 'the source wrote nothing before the abort').toBeGreaterThan(0);
    expect(
      afterAbort,
      `chunks the source handed the writer after the abort (of ${chunks}): it must watch ctx.signal`,
    ).toBeLessThanOrEqual(run.maxInFlight);
    expect(await target.revisions()).toEqual([]);
    expect((await target.scan()).interrupted).toEqual([]);
  });
}

/** Verify, against a revision whose chunks were all changed on their way to the store. */
function testVerify(run: SourceSuiteRun<unknown>): void {
  it('verifies a fresh revision against the source and distrusts one that differs', async () => {
    // Every chunk the source writes is stored with one byte flipped: a verify that compares nothing
    // (or always says ok) lets that revision through as trusted.
    const tamperedSize = run.size(6 * CHUNK + 4321);
    await run.fixture.resize(tamperedSize);
    await run.fixture.write(0, randomBytes(tamperedSize));
    const target = await run.freshArchive('tampered');
    const tampering = withWriter(run.source, (writer) =>
      spyWriter(
        writer,
        () => {},
        (data) => {
          data[0] = data[0]! ^ 0xff;
        },
      ),
    );
    const rev = await run.backupInto(target, tampering, ['tampered']);
    expect(rev.stats.bytes_read, 'a full backup reports every byte it read').toBeGreaterThanOrEqual(rev.size);
    if (run.source.verify == null) {
      expect(rev.verification).toMatchObject({ method: 'none', ok: true });
      return;
    }
    expect(rev.verification?.ok, 'verify must compare the revision with the source').toBe(false);
    expect(rev.trust).toBe('distrusted');
    expect(rev.verification?.mismatches.length).toBeGreaterThan(0);
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
