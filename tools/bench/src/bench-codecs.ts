// Compares the zstd implementations @backy/core can use (and deflate) on the 4 MiB text chunks of a
// VM-like image: ratio, compress and decompress MB/s on one core, and each one's peak RSS. zstd-napi,
// which @backy/core used before, is the baseline; every row is also given as a ratio against it.
// `pnpm bench:codecs`; BENCH_SIZE (default 64 MiB) is the size of the image the text chunks come from,
// BENCH_ROUNDS (default 3) how often each is compressed and decompressed (the best round counts).
//
// Each implementation runs in a process of its own (this file again, with its name), so that its RSS is
// its own. They are used the way the chunk workers use them: into and out of one reused buffer, with the
// copy the allocating ones need (see packages/core/src/store/native-modules.js).

import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as zlib from 'node:zlib';
import { vmLikeRegions } from '@backy/core/testing/helpers';

type Compress = (data: Buffer, out: Buffer) => number;
type Decompress = (data: Buffer, out: Buffer) => number;

const require = createRequire(import.meta.url);
const copied = (result: Buffer, out: Buffer) => (result.length > out.length ? -1 : result.copy(out));

/** The node:zlib part of Node.js >= 22.15 (this package builds with older types). */
interface ZlibZstd {
  zstdCompressSync?: (data: Buffer, options: object) => Buffer;
  zstdDecompressSync?: (data: Buffer, options: object) => Buffer;
  constants: { ZSTD_c_compressionLevel?: number };
}

const IMPLEMENTATIONS: Record<string, () => [Compress, Decompress] | string> = {
  'zstd-napi 1': () => {
    // Before: buffer-to-buffer through its contexts (the package is only here, for this comparison).
    const binding = require('zstd-napi/binding.js') as typeof import('zstd-napi/binding.js');
    const cctx = new binding.CCtx();
    const dctx = new binding.DCtx();
    return [(data, out) => cctx.compress(out, data, 1), (data, out) => dctx.decompress(out, data)];
  },
  'node:zlib 1': () => {
    const z = zlib as unknown as ZlibZstd;
    const level = z.constants.ZSTD_c_compressionLevel;
    if (z.zstdCompressSync == null || z.zstdDecompressSync == null || level == null)
      return `Node.js ${process.version} has no zstd (22.15 and later have)`;
    const { zstdCompressSync, zstdDecompressSync } = z;
    return [
      (data, out) => copied(zstdCompressSync(data, { params: { [level]: 1 } }), out),
      (data, out) =>
        copied(zstdDecompressSync(data, { maxOutputLength: out.length, chunkSize: out.length + 1 }), out),
    ];
  },
  '@toondepauw/node-zstd 1': () => {
    const { Encoder, Decoder } = require('@toondepauw/node-zstd') as typeof import('@toondepauw/node-zstd');
    const encoder = new Encoder(1);
    const decoder = new Decoder();
    return [
      (data, out) => copied(encoder.encodeSync(data), out),
      (data, out) => copied(decoder.decodeSync(data), out),
    ];
  },
  'deflate 1': () => [
    (data, out) => copied(zlib.deflateRawSync(data, { level: 1 }), out),
    (data, out) => copied(zlib.inflateRawSync(data), out),
  ],
};
const BASELINE = 'zstd-napi 1';

interface Row {
  ratio: number;
  compress: number;
  decompress: number;
  random: number;
  rssMB: number;
}

function measure(name: string): Row | string {
  const made = IMPLEMENTATIONS[name]!();
  if (typeof made === 'string') return made;
  const [compress, decompress] = made;
  const SIZE = Number(process.env.BENCH_SIZE ?? 64 * 1024 * 1024);
  const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
  const chunks: Buffer[] = [];
  for (const { kind, data } of vmLikeRegions(SIZE)) if (kind === 'text') chunks.push(data);
  const bytes = chunks.reduce((sum, b) => sum + b.length, 0);
  const random = randomBytes(4 * 1024 * 1024);
  const out = Buffer.alloc(5 * 1024 * 1024);
  const back = Buffer.alloc(4 * 1024 * 1024);
  const mbps = (total: number, ms: number) => total / 1e6 / (ms / 1000);
  let best = { compress: 0, decompress: 0, random: 0 };
  let packedBytes = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const packed: Buffer[] = [];
    let t = performance.now();
    for (const chunk of chunks) packed.push(Buffer.from(out.subarray(0, compress(chunk, out))));
    const c = mbps(bytes, performance.now() - t);
    t = performance.now();
    for (let i = 0; i < packed.length; i++) {
      const length = decompress(packed[i]!, back.subarray(0, chunks[i]!.length));
      if (length !== chunks[i]!.length)
        throw new Error(`${name}: chunk ${i} decompressed to ${length} bytes`);
    }
    const d = mbps(bytes, performance.now() - t);
    t = performance.now();
    for (let i = 0; i < 4; i++) compress(random, out);
    const r = mbps(4 * random.length, performance.now() - t);
    best = {
      compress: Math.max(best.compress, c),
      decompress: Math.max(best.decompress, d),
      random: Math.max(best.random, r),
    };
    packedBytes = packed.reduce((sum, p) => sum + p.length, 0);
  }
  return { ratio: packedBytes / bytes, ...best, rssMB: process.resourceUsage().maxRSS / 1024 };
}

const child = process.argv[2];
if (child != null) {
  process.stdout.write(JSON.stringify(measure(child)));
} else {
  const self = fileURLToPath(import.meta.url);
  const rows = new Map<string, Row | string>();
  for (const name of Object.keys(IMPLEMENTATIONS)) {
    const r = spawnSync(process.execPath, [self, name], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    rows.set(name, r.status === 0 ? (JSON.parse(r.stdout) as Row | string) : `failed: ${r.stderr.trim()}`);
  }
  const base = rows.get(BASELINE);
  const vs = (value: number, key: keyof Row) =>
    typeof base === 'object' ? ` (${(value / base[key]).toFixed(2)}×)` : '';
  console.log(
    `zstd implementations on ${process.version}, text chunks of a VM-like image; MB/s on one core, best of the rounds; (×) against ${BASELINE}`,
  );
  console.log(
    `${'codec'.padEnd(24)} ${'ratio'.padStart(6)} ${'compress MB/s'.padStart(20)} ${'decompress MB/s'.padStart(20)} ${'random compr. MB/s'.padStart(20)} ${'peak RSS MB'.padStart(16)}`,
  );
  for (const [name, row] of rows) {
    if (typeof row === 'string') {
      console.log(`${name.padEnd(24)} not measured: ${row}`);
      continue;
    }
    const cell = (key: keyof Row, digits = 0, width = 20) =>
      `${row[key].toFixed(digits)}${vs(row[key], key)}`.padStart(width);
    console.log(
      `${name.padEnd(24)} ${row.ratio.toFixed(3).padStart(6)} ${cell('compress')} ${cell('decompress')} ${cell('random')} ${cell('rssMB', 0, 16)}`,
    );
  }
}
