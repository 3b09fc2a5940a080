import {
  BackyError,
  isBackyError,
  sampleIndexes,
  type VerificationResult,
  type VerifyContext,
} from '@backy/core/source';
import type { Logger } from 'pino';
import { QemuImgChunkReader, qemuImgSupportsRbd } from './snapshot-reader.js';
import type { RbdImage } from './snapshots.js';

/** What verification needs of the source. */
export interface VerifySetup {
  target: RbdImage;
  /** Share of the chunks compared with the snapshot. */
  fraction: number;
  reader: 'auto' | 'qemu-img' | 'export';
  qemuImgBinary?: string;
}

/** qemu-img processes reading sampled chunks at once. */
const QEMU_CONCURRENCY = 3;

/** The sample's chunks checked so far, against the verify's time budget. */
class SampleCheck {
  readonly mismatches: number[] = [];
  checked = 0;
  private checkedBytes = 0;
  private readonly sampleBytes: number;

  constructor(
    private readonly ctx: VerifyContext,
    sample: number[],
    private readonly started: number,
  ) {
    // Progress in bytes, as the contract says (not chunks: the bar would show `1 B / 1 B`).
    this.sampleBytes = sample.reduce((sum, index) => sum + ctx.reader.chunkLength(index), 0);
  }

  async check(index: number, data: Buffer): Promise<void> {
    const ok = await this.ctx.checkChunk(index, data);
    if (!ok) this.mismatches.push(index);
    this.checked++;
    this.checkedBytes += this.ctx.reader.chunkLength(index);
    this.ctx.progress(this.checkedBytes, this.sampleBytes);
  }

  overBudget(): boolean {
    return this.checked > 0 && Date.now() - this.started > this.ctx.budgetMs;
  }
}

/**
 * Compares a sample of the revision's chunks with the snapshot it was read from, through qemu-img (each
 * sampled chunk by offset) or `rbd export` (up to the last sampled chunk), within the verify's budget.
 */
export async function verifyAgainstSnapshot(
  setup: VerifySetup,
  ctx: VerifyContext,
  snapshot: string,
): Promise<VerificationResult> {
  const { rbd, pool, image, spec } = setup.target;
  const { reader, signal } = ctx;
  const started = Date.now();
  const log = ctx.logger.child({ image: spec, snapshot });
  const total = reader.chunkCount;
  const info = await rbd.info(pool, image, snapshot, signal);
  if (info.size !== reader.size) {
    log.error(
      { snapshot_size: info.size, revision_size: reader.size },
      'snapshot size differs from the revision',
    );
    return { method: 'partial', chunks_checked: 0, chunks_total: total, ok: false, mismatches: [] };
  }
  if (total === 0) return { method: 'full', chunks_checked: 0, chunks_total: 0, ok: true, mismatches: [] };

  const wanted = Math.max(1, Math.ceil(total * Math.min(1, Math.max(0, setup.fraction))));
  const sample = sampleIndexes(total, wanted);
  const tally = new SampleCheck(ctx, sample, started);
  let pending = sample;
  if ((await chooseReader(setup, sample.length, total)) === 'qemu-img') {
    pending = await checkWithQemuImg(setup, ctx, snapshot, pending, tally, log);
  }
  if (pending.length > 0 && !tally.overBudget())
    await checkFromExport(setup.target, ctx, snapshot, pending, tally);
  const mismatches = tally.mismatches.sort((a, b) => a - b);
  const result: VerificationResult = {
    method: tally.checked === total ? 'full' : 'partial',
    chunks_checked: tally.checked,
    chunks_total: total,
    ok: mismatches.length === 0,
    mismatches,
  };
  log.info(
    {
      ...result,
      mismatches: mismatches.slice(0, 20),
      sampled: sample.length,
      seconds: (Date.now() - started) / 1000,
    },
    'verified against the snapshot',
  );
  return result;
}

/** `auto` prefers qemu-img when it has rbd support and the sample is small. */
async function chooseReader(
  setup: VerifySetup,
  sampled: number,
  total: number,
): Promise<'qemu-img' | 'export'> {
  if (setup.reader !== 'auto') return setup.reader;
  const small = sampled * 4 <= total;
  return small && (await qemuImgSupportsRbd(setup.qemuImgBinary)) ? 'qemu-img' : 'export';
}

/**
 * Checks the chunks at `indexes` read with qemu-img; returns those left unchecked. A qemu-img failure
 * leaves the rest to `rbd export`; an abort or any other error ends the verification.
 */
async function checkWithQemuImg(
  setup: VerifySetup,
  ctx: VerifyContext,
  snapshot: string,
  indexes: number[],
  tally: SampleCheck,
  log: Logger,
): Promise<number[]> {
  const { rbd, pool, image } = setup.target;
  const { reader, signal } = ctx;
  const chunks = new QemuImgChunkReader(
    { pool, image, snapshot, client: rbd.client },
    reader.chunkSize,
    setup.qemuImgBinary,
  );
  // A few qemu-img processes at once: each spends most of its time connecting to the cluster.
  const done = new Set<number>();
  let failure: unknown = null;
  let next = 0;
  const work = async () => {
    while (failure == null && next < indexes.length && !tally.overBudget()) {
      const index = indexes[next++]!;
      try {
        signal.throwIfAborted();
        await tally.check(index, await chunks.read(index, reader.chunkLength(index), signal));
        done.add(index);
      } catch (error) {
        failure ??= error;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(QEMU_CONCURRENCY, indexes.length) }, work));
    if (failure != null) {
      if (signal.aborted || isBackyError(failure, 'ABORTED')) throw failure;
      if (!isBackyError(failure, 'SOURCE_FAILED')) throw failure;
      log.warn({ err: failure }, 'reading chunks with qemu-img failed; reading them from rbd export instead');
    }
    return indexes.filter((index) => !done.has(index));
  } finally {
    await chunks.close();
  }
}

/** Checks the chunks at `indexes` (ascending) read from `rbd export` of the snapshot, until the budget is spent. */
async function checkFromExport(
  target: RbdImage,
  ctx: VerifyContext,
  snapshot: string,
  indexes: number[],
  tally: SampleCheck,
): Promise<void> {
  const { rbd, pool, image } = target;
  const { reader, signal } = ctx;
  let next = 0;
  await rbd.export({ pool, image, snapshot, signal }, async (stdout) => {
    let offset = 0;
    let buffer: Buffer | null = null;
    let filled = 0;
    for await (const piece of stdout) {
      let at = 0;
      while (at < piece.length && next < indexes.length) {
        const index = indexes[next]!;
        const start = index * reader.chunkSize;
        const length = reader.chunkLength(index);
        const pos = offset + at;
        if (pos < start) {
          at += Math.min(start - pos, piece.length - at);
          continue;
        }
        buffer ??= Buffer.allocUnsafe(length);
        const n = Math.min(length - filled, piece.length - at);
        piece.copy(buffer, filled, at, at + n);
        filled += n;
        at += n;
        if (filled === length) {
          await tally.check(index, buffer);
          buffer = null;
          filled = 0;
          next++;
          if (tally.overBudget()) return;
        }
      }
      offset += piece.length;
      if (next >= indexes.length) return;
    }
    if (next < indexes.length)
      throw new BackyError(
        'SOURCE_FAILED',
        `rbd export ended at byte ${offset}, before chunk ${indexes[next]}`,
      );
  });
}
