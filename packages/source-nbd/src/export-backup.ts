/**
 * Backs up one NBD export into a revision, shared by the `nbd` and `qcow2` sources: a full backup reads
 * only what base:allocation reports allocated; an incremental reads the chunks a dirty bitmap touches,
 * keeps the rest from the parent, and first compares a random sample of the kept chunks with the
 * parent, so a bitmap that missed changes turns this backup into a full one instead of a wrong one.
 */
import {
  type BackupContext,
  BackyError,
  forEachChunk,
  type RevisionReader,
  type VerificationResult,
  type VerifyContext,
} from '@backy/core/source';
import { BASE_ALLOCATION, STATE_ZERO } from '@backy/nbd-protocol';
import type { Extent, NbdClient } from './client.js';

/** Reads in flight on the connection: enough to keep a disk and the link busy. */
export const READ_CONCURRENCY = 8;
/** `qemu:dirty-bitmap:NAME` extents with this flag are dirty. */
const DIRTY = 1;

export const dirtyBitmapContext = (bitmap: string) => `qemu:dirty-bitmap:${bitmap}`;

export interface SampleHooks {
  /** Clean chunks compared with the parent on an incremental, and again by verify (default: see `sampleSize`). */
  sampleChunks?: number;
  random?: () => number;
}

/** How many kept chunks an incremental checks: 0.2% of them, at least 8 (all, if fewer). */
export function sampleSize(clean: number, hooks: SampleHooks = {}): number {
  return Math.min(clean, hooks.sampleChunks ?? Math.max(8, Math.ceil(clean * 0.002)));
}

/** Picks `count` distinct entries of `from` at random. */
export function pickSample(from: number[], count: number, random: () => number = Math.random): number[] {
  const pool = [...from];
  const n = Math.min(count, pool.length);
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(random() * (pool.length - i));
    [pool[i], pool[j]] = [pool[j]!, pool[i]!];
  }
  return pool.slice(0, n).sort((a, b) => a - b);
}

/** What a backup did, for `verify` of the same revision. */
export interface BackupRun {
  /** Chunks read from the export (written or found equal), and chunks zeroed by base:allocation. */
  read: number[];
  /** Chunks kept from the parent. */
  kept: number[];
  /** Kept chunks that hold data now or in the parent: those worth sampling. */
  suspect: number[];
}

export interface ExportBackupPlan {
  /** The dirty bitmap to make an incremental from, or null for a full backup. */
  bitmap: string | null;
  /** Why a full backup (logged). */
  fullReason?: string;
}

/** Marks the chunks that extents matching `wanted` touch. */
function chunksTouched(
  extents: Extent[],
  chunkSize: number,
  count: number,
  wanted: (flags: number) => boolean,
) {
  const marks = new Uint8Array(count);
  for (const e of extents) {
    if (!wanted(e.flags) || e.length === 0) continue;
    const last = Math.min(count - 1, Math.floor((e.offset + e.length - 1) / chunkSize));
    for (let i = Math.floor(e.offset / chunkSize); i <= last; i++) marks[i] = 1;
  }
  return marks;
}

/** Chunks that may hold data: touched by an extent base:allocation does not report as zero. */
async function dataChunks(client: NbdClient, chunkSize: number, count: number): Promise<Uint8Array> {
  if (client.contextId(BASE_ALLOCATION) == null || client.size === 0) return new Uint8Array(count).fill(1);
  const extents = await client.extents(BASE_ALLOCATION, 0, client.size);
  return chunksTouched(extents, chunkSize, count, (flags) => (flags & STATE_ZERO) === 0);
}

function isZero(data: Buffer): boolean {
  for (let i = 0; i < data.length; i += 65536) {
    const end = Math.min(data.length, i + 65536);
    for (let j = i; j < end; j++) if (data[j] !== 0) return false;
  }
  return true;
}

/**
 * The plan's dirty bitmap if an incremental can be made from it (a trusted parent of the same size, and
 * the server offers the bitmap), else null with the reason for a full backup.
 */
function usableBitmap(
  ctx: BackupContext,
  client: NbdClient,
  plan: ExportBackupPlan,
): { bitmap: string | null; fullReason: string } {
  const log = ctx.logger;
  const size = client.size;
  let bitmap = plan.bitmap;
  let fullReason = plan.fullReason ?? 'no bitmap to make an incremental from';
  if (bitmap != null && ctx.parent == null) {
    bitmap = null;
    fullReason = 'no trusted parent revision';
  }
  if (bitmap != null && ctx.parent!.reader.size !== size) {
    log.warn(
      { parent: ctx.parent!.reader.size, size },
      `export size changed since the parent revision (${ctx.parent!.reader.size} → ${size} bytes): full backup`,
    );
    bitmap = null;
    fullReason = 'the export size changed';
  }
  if (bitmap != null && client.contextId(dirtyBitmapContext(bitmap)) == null) {
    log.warn({ bitmap }, `the NBD server does not offer dirty bitmap ${bitmap}: full backup`);
    fullReason = `dirty bitmap ${bitmap} is not offered`;
    bitmap = null;
  }
  return { bitmap, fullReason };
}

/** True if the export's chunk `index` equals the parent's. */
async function sameAsParent(parent: RevisionReader, index: number, data: Buffer): Promise<boolean> {
  if (parent.isZero(index)) return isZero(data);
  return (await parent.read(index)).equals(data);
}

export async function backupExport(
  ctx: BackupContext,
  client: NbdClient,
  plan: ExportBackupPlan,
  hooks: SampleHooks = {},
): Promise<BackupRun> {
  const { writer, signal } = ctx;
  const size = client.size;
  const log = ctx.logger;
  const usable = usableBitmap(ctx, client, plan);
  const bitmap = usable.bitmap;
  let fullReason = usable.fullReason;
  await writer.resize(size);
  const { chunkSize, chunkCount: count } = writer;
  const data = await dataChunks(client, chunkSize, count);
  const run: BackupRun = { read: [], kept: [], suspect: [] };
  let done = 0;
  const handled = (index: number) => {
    done += writer.chunkLength(index);
    ctx.progress(done, size);
  };
  const readChunk = async (index: number) => {
    const length = writer.chunkLength(index);
    const { data: bytes, dataBytes } = await client.read(index * chunkSize, length, writer.allocate(length));
    ctx.reportRead(dataBytes);
    return bytes;
  };

  let dirty: Uint8Array | null = null;
  if (bitmap != null) {
    const parent = ctx.parent!.reader;
    const extents = await client.extents(dirtyBitmapContext(bitmap), 0, size);
    dirty = chunksTouched(extents, chunkSize, count, (flags) => (flags & DIRTY) !== 0);
    // Clean chunks that are zero in the parent and unallocated now agree without a read; one the
    // parent holds data for that now reads as zero differs without a read. The sample is drawn from
    // the others, so that it is not spent on empty space.
    const mismatches: number[] = [];
    for (let i = 0; i < count; i++) {
      if (dirty[i] !== 0) continue;
      if (data[i] !== 0 || !parent.isZero(i)) run.suspect.push(i);
      if (data[i] === 0 && !parent.isZero(i)) mismatches.push(i);
    }
    const sample = pickSample(
      run.suspect.filter((i) => data[i] !== 0),
      sampleSize(run.suspect.length, hooks),
      hooks.random,
    );
    await forEachChunk(
      sample.length,
      READ_CONCURRENCY,
      async (k) => {
        const index = sample[k]!;
        const bytes = await readChunk(index);
        if (!(await sameAsParent(parent, index, bytes))) mismatches.push(index);
      },
      signal,
    );
    ctx.remember({ sample_checked: sample.length });
    if (mismatches.length > 0) {
      mismatches.sort((a, b) => a - b);
      log.error(
        { bitmap, mismatches: mismatches.slice(0, 20), sampled: sample.length },
        `dirty bitmap ${bitmap} missed changes: ${mismatches.length} clean chunks differ from the parent (${sample.length} sampled); making a full backup instead`,
      );
      ctx.remember({ sample_mismatches: mismatches.length });
      dirty = null;
      run.suspect.length = 0;
      fullReason = `dirty bitmap ${bitmap} missed changes`;
    }
  }

  const toRead: number[] = [];
  for (let i = 0; i < count; i++) {
    if (dirty != null && dirty[i] === 0) {
      writer.keep(i);
      run.kept.push(i);
      handled(i);
    } else if (data[i] === 0) {
      writer.zero(i);
      run.read.push(i);
      handled(i);
    } else {
      toRead.push(i);
    }
  }
  log.info(
    dirty != null
      ? { bitmap, read: toRead.length, kept: run.kept.length, chunks: count }
      : { reason: fullReason, read: toRead.length, unallocated: count - toRead.length, chunks: count },
    dirty != null ? 'incremental backup from the dirty bitmap' : 'full backup of the allocated extents',
  );
  ctx.remember({
    mode: dirty != null ? 'incremental' : 'full',
    ...(dirty != null ? { from_bitmap: bitmap } : {}),
  });
  await forEachChunk(
    toRead.length,
    READ_CONCURRENCY,
    async (k) => {
      const index = toRead[k]!;
      await writer.write(index, await readChunk(index));
      handled(index);
    },
    signal,
  );
  run.read.push(...toRead);
  return run;
}

/**
 * Reads back from the export what the backup read (its written and zeroed chunks) and a fresh random
 * sample of the kept ones, within the time budget, and compares them with the revision.
 */
export async function verifyExport(
  ctx: VerifyContext,
  client: NbdClient,
  run: BackupRun | null,
  hooks: SampleHooks = {},
): Promise<VerificationResult> {
  const { reader } = ctx;
  const total = reader.chunkCount;
  if (client.size !== reader.size) {
    throw new BackyError(
      'SOURCE_FAILED',
      `export size changed during the backup (${reader.size} → ${client.size} bytes)`,
    );
  }
  const all = Array.from({ length: total }, (_, i) => i);
  const kept = run == null ? [] : run.suspect.length > 0 ? run.suspect : run.kept;
  const indexes =
    run == null
      ? all
      : [...run.read, ...pickSample(kept, sampleSize(kept.length, hooks), hooks.random)].sort(
          (a, b) => a - b,
        );
  const started = Date.now();
  const mismatches: number[] = [];
  let checked = 0;
  let next = 0;
  await forEachChunk(
    Math.min(READ_CONCURRENCY, indexes.length),
    READ_CONCURRENCY,
    async () => {
      while (next < indexes.length && !(checked > 0 && Date.now() - started > ctx.budgetMs)) {
        ctx.signal.throwIfAborted();
        const index = indexes[next++]!;
        const length = reader.chunkLength(index);
        const buffer = ctx.allocate(length);
        try {
          const { data } = await client.read(index * reader.chunkSize, length, buffer);
          if (!(await ctx.checkChunk(index, data))) mismatches.push(index);
        } finally {
          ctx.release(buffer);
        }
        checked++;
        ctx.progress(checked, indexes.length);
      }
    },
    ctx.signal,
  );
  mismatches.sort((a, b) => a - b);
  return {
    method: checked === total ? 'full' : 'partial',
    chunks_checked: checked,
    chunks_total: total,
    ok: mismatches.length === 0,
    mismatches,
  };
}
