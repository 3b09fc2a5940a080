// Compares the chunk codecs on 4 MiB chunks of a VM-like image: ratio, compress and decompress MB/s on
// one core. Used to choose zstd level 1 as the default (see packages/core/src/store/codec.ts).
// `pnpm bench:codecs`; BENCH_SIZE (default 64 MiB) is the size of the image the text chunks come from.

import { randomBytes } from 'node:crypto';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { vmLikeRegions } from '@backy/core/testing/helpers';
// The zstd binding @backy/core compresses chunks with, in the catalog's version.
import * as zstd from 'zstd-napi';

const SIZE = Number(process.env.BENCH_SIZE ?? 64 * 1024 * 1024);
const chunks: Buffer[] = [];
for (const { kind, data } of vmLikeRegions(SIZE)) if (kind === 'text') chunks.push(data);
const bytes = chunks.reduce((sum, b) => sum + b.length, 0);
const random = randomBytes(4194304);
const codecs: Record<string, [(b: Buffer) => Buffer, (b: Buffer) => Buffer]> = {
  'zstd 1': [(b) => zstd.compress(b, { compressionLevel: 1 }), (b) => zstd.decompress(b)],
  'zstd 3': [(b) => zstd.compress(b, { compressionLevel: 3 }), (b) => zstd.decompress(b)],
  'zstd -3': [(b) => zstd.compress(b, { compressionLevel: -3 }), (b) => zstd.decompress(b)],
  'deflate 1': [(b) => deflateRawSync(b, { level: 1 }), (b) => inflateRawSync(b)],
};
console.log('codec        text ratio  compress MB/s  decompress MB/s  random compress MB/s');
for (const [name, [c, d]] of Object.entries(codecs)) {
  let t = performance.now();
  const packed = chunks.map((b) => c(b));
  const cs = (performance.now() - t) / 1000;
  t = performance.now();
  for (const p of packed) d(p);
  const ds = (performance.now() - t) / 1000;
  t = performance.now();
  for (let i = 0; i < 4; i++) c(random);
  const rs = (performance.now() - t) / 1000;
  const ratio = packed.reduce((s, p) => s + p.length, 0) / bytes;
  const mb = bytes / 1e6;
  console.log(
    `${name.padEnd(12)} ${ratio.toFixed(3).padStart(10)} ${(mb / cs).toFixed(0).padStart(14)} ${(mb / ds).toFixed(0).padStart(16)} ${((4 * 4194304) / 1e6 / rs).toFixed(0).padStart(20)}`,
  );
}
