import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeChunkFile, encodeChunkFile, parseChunkFile } from './chunk-file.js';
import { chunkHashHex } from './chunk-hash.js';
import { codecByName } from './codec.js';
import { loadZstd, ZSTD_PACKAGE } from './native-modules.js';
import { ZSTD_WASM_PACKAGE } from './zstd-wasm.js';

/** 400 lines of a kernel log (23952 bytes), the content of the zstd-napi frame below. */
function kernelLog(): Buffer {
  const lines: string[] = [];
  for (let i = 0; i < 400; i++)
    lines.push(
      `Dec  1 12:${String(i % 60).padStart(2, '0')}:07 vm kernel: [${(i * 7919) % 100000}] eth0: link up, 1000 Mbps\n`,
    );
  return Buffer.from(lines.join(''));
}

/**
 * `kernelLog()` as zstd-napi 0.0.13 compressed it at level 1 (`zstd.compress(data, {compressionLevel:
 * 1})`): the payload of every codec-3 chunk written before zstd-napi was replaced. Kept as bytes because
 * that package is gone from @backy/core; these must read unchanged.
 */
const ZSTD_NAPI_FRAME =
  'KLUv/WCQXKUrAJpqTAwagGuWA8BoU3QFiSFWNucSKaVMKSWV4AlM1QPRALYAtgARQqOgmSxmJmWtv1kcZWrMo3Eho+PFSKKIKqai4lEK7xPkyKP1U/eL6/vvKcPH1E6zXah/vd7wFuQax0OLX7lrsvew66xHTMvIbKKyGtEqxamymZolZScN9yXfnU97KbIzctSx6Jya4iOKHYmjh0URUukUx+fTo7iLEY6GNqHYXCwxXqzY0KJWsQ03xbdCrf/xPpbX6zKyej5lqfSxVjMADBoMDDhExA4BGhwcFBgSLBwQAkGDhEOBIHBAWEhgWJCgcFDw4DCBEIHAHXY4HEgQELundTq9Zl4lD8rnn+KX6oZN+p5FPFSeMJH88tgxYq7e4F5iXelbe1i+1pCtJO28SkOtGgaHYeHkJJkNmqVNXkYhekYr00pmUbJt7Nd7nc7FfSFdzGOmgoqiRhGemEiMHowofbu/8EK7xIcn10voUfPYVzF/d2xX7fml5fOMR1WOWpmqVAmZeiQlQxrlS7UrltYnlhLshmuNOSTFFxEbI24d1i4czvmWWc/kW4acI5lNpmbaWK0F3O1f6ieyhIdjsrjkLrJjXmue7syuen2rcurMlEpKa/UNcUctgyRZjxaeihIUEsdDEmHRGdvq7R2Ha23e3v01GdrUjBZVifojyLEIslEzKgtTPCysj+kkcyJ5xaP/7nN6Ft/dnX/LlKXIM1PHdXHQHeHRptsKa1ofPSuujlCJphUtSuPnxmSVHVvSHz+UKs5IJdJnNbKIjR/tUboS59i5iSdSMURBEcWJuETMY+Xgom34jM/+ugRS76xUt94GsREdV7qVqonqIM45vFjYkXNEZlGYUywfJ7sZyWK3tubT/JlRShYzGU0/oXuu6RrRbWTUvBhKlCoccVLcEyISQw+KKPrxPoZf7dzb+3UP/TWXfSqm3zR2VR2sZ5oyk1yb5ZsqMh2STpT4lt2YdsVuZdee9RRfxI/S4VxIc1aZNTNcTjjS1pg5u3ahCc0mRpSRvxJHVGMLlsEvOuGq+EJKMZ+YkVP9tT/sT/oRz3gDgx+oEmDIsN3+d0KPkVgKDxL4BIEZ2BAheIVgrR9cQSB4DC8BdWi3l7SjjQztfPI1vx399TaDvu8sXrBIO32gncsSZXbVDbOXvemsXksO0m4DGAlKSws4eZ0kF9wL7faRdgumcOrEOY+OrEFl0K5dadc5tSO8dFiPQHgMM2tdH7RrK7dceZHY+BjCXDifw2MI7RCRdi+0GdrJcVY68H2sBtrxIO2SofdYKMU8DZ7HK0AH7f6UdqRS1MlxHl3w6OUsBO3uYiftdD5JL+/kOBeiYV4U2rlD2mWpUeE4dIL1W4XtoYnQbjvSbmE5oFeK6U4E7oVsod1KaSe9bumxdL7AaMwIctC6PGi3mLRDy1IjwnEQCWpiEkfrgHarSzuNxwFarYxIHhyf54B2fEi7AHVsODtEwc2YYvQzGWjHR9p59IKnFyfKwefzsQK0e2PSjvvf4rHqPEmerVjBDlxAuwWlnTtlDdrh99nLfnT6w3/i6qK19Eu7y5wtwIXiQszukxTQrgsZFgSoXUaB+aBx97EwxdBvMNCOiLTz0ckySOUK0nEXtOpaaIeKtMOgxi2n10nkwrOzPGhHdPD3viVviJ+YXtMM9j93Gq9lI0m+5c7UQnV4T77yt6O/bm6znMBa+nnPLXD9I5/f+siuvmH2vxbEc2PqW8J/7xPqG8q59gNv/lo4+uhbCnFdi2HCeUP8ifSazTSOJXOehb+ZuaUV80y6x3fnb/onftYyT3MGu+U/9/DfWY5qHTJf56+FYbFv0zuuCUNq0x1O+zbdcQ3i1KY7N6e/D7z1XbCJiBuQbAU=';

/** A chunk file as chunk-file.ts lays it out: `BKC1`, codec id, three zero bytes, raw length (LE u32). */
function chunkFile(codecId: number, rawLength: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(12);
  header.write('BKC1');
  header.writeUInt8(codecId, 4);
  header.writeUInt32LE(rawLength, 8);
  return Buffer.concat([header, payload]);
}

const NATIVE_MODULES = fileURLToPath(new URL('./native-modules.js', import.meta.url));
const hasNodeZstd =
  typeof (createRequire(import.meta.url)('node:zlib') as Record<string, unknown>).zstdCompressSync ===
  'function';

describe('zstd', () => {
  it('reads a codec-3 chunk that zstd-napi wrote, unchanged', async () => {
    const text = kernelLog();
    const hash = chunkHashHex(text);
    const payload = Buffer.from(ZSTD_NAPI_FRAME, 'base64');
    const out = await decodeChunkFile(
      hash,
      parseChunkFile(hash, chunkFile(3, text.length, payload)),
      'blake3',
    );
    expect(out.equals(text)).toBe(true);
    // A file that claims less content than the frame holds is damaged, not cut short silently.
    const short = parseChunkFile(hash, chunkFile(3, text.length - 1, payload));
    await expect(decodeChunkFile(hash, short, 'blake3')).rejects.toThrow(/cannot decompress/);
  });

  it('writes chunks that read back as codec 3, smaller than the data', async () => {
    const text = Buffer.concat(Array.from({ length: 40 }, kernelLog)); // ~1 MiB
    const file = await encodeChunkFile(codecByName('zstd'), text);
    const copy = Buffer.from(file);
    expect(copy.readUInt8(4)).toBe(3);
    expect(copy.length).toBeLessThan(text.length / 4);
    const hash = chunkHashHex(text);
    expect((await decodeChunkFile(hash, parseChunkFile(hash, copy), 'blake3')).equals(text)).toBe(true);
  });

  it("uses Node's zstd where the runtime has one, else the addon; either reads the other's frames", () => {
    const text = kernelLog();
    const zstd = loadZstd();
    const addon = createRequire(import.meta.url)(ZSTD_PACKAGE) as {
      Encoder: new (level: number) => { encodeSync(data: Buffer): Buffer };
      Decoder: new () => { decodeSync(data: Buffer): Buffer };
    };
    // Before 22.15: the addon compresses, WebAssembly decompresses (zstd-wasm.js says why).
    expect(zstd.name).toBe(hasNodeZstd ? 'node:zlib' : `${ZSTD_PACKAGE} + ${ZSTD_WASM_PACKAGE}`);
    expect(zstd.decompressReuses).toBe(!hasNodeZstd);
    // On Node.js before 22.15 both sides are the addon: the frames still go through loadZstd's wrapper.
    expect(zstd.decompress(new addon.Encoder(1).encodeSync(text), text.length).equals(text)).toBe(true);
    expect(new addon.Decoder().decodeSync(zstd.compress(text, 1)).equals(text)).toBe(true);
    expect(() => zstd.decompress(zstd.compress(text, 1), text.length - 1)).toThrow();
  });
});

describe('a binary that is missing', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'backy-native-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /**
   * Runs `code` in a fresh Node with `hide` preloaded: a module-resolution override that takes packages
   * (and Node's own zstd) away, as an install without optional dependencies would.
   */
  async function without(hide: string, code: string) {
    const preload = join(dir, 'hide.cjs');
    await writeFile(preload, hide);
    const r = spawnSync(process.execPath, ['--require', preload, '--input-type=module', '-e', code], {
      encoding: 'utf8',
    });
    return { code: r.status, out: `${r.stdout}${r.stderr}` };
  }

  const hideResolution = (pattern: string, instead = '') => `
    const Module = require('node:module');
    const zlib = require('node:zlib');
    delete zlib.zstdCompressSync;
    delete zlib.zstdDecompressSync;
    const resolve = Module._resolveFilename;
    Module._resolveFilename = function (request, ...rest) {
      if (${pattern}.test(request)) {
        ${instead || "const e = new Error('Cannot find module ' + request); e.code = 'MODULE_NOT_FOUND'; throw e;"}
      }
      return resolve.call(this, request, ...rest);
    };
  `;
  const tryZstd = `
    const { loadZstd } = await import(${JSON.stringify(NATIVE_MODULES)});
    for (let i = 0; i < 2; i++) {
      try { loadZstd(); console.log('loaded'); } catch (e) { console.log(e.name + ': ' + e.message); }
    }
  `;

  it('says which package is missing and what to do, in one line, every time it is asked', async () => {
    const r = await without(hideResolution('/^@toondepauw\\/node-zstd-/'), tryZstd);
    expect(r.code, r.out).toBe(0);
    const lines = r.out.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[1]).toBe(lines[0]);
    expect(lines[0]).toMatch(
      /^NativeModuleError: zstd compression is not available: Node\.js v[\d.]+ has none built in \(22\.15 and later have\): @toondepauw\/node-zstd: its binary for this platform, the package @toondepauw\/node-zstd-linux-[\w-]+-(gnu|musl), is not installed; reinstall backy with its optional dependencies \(not with --omit=optional\)$/,
    );
  });

  it('names the addon package itself when it is not installed', async () => {
    const r = await without(hideResolution('/^@toondepauw\\/node-zstd$/'), tryZstd);
    expect(r.out.trim().split('\n')[0]).toMatch(
      /^NativeModuleError: zstd compression is not available: .*: the package @toondepauw\/node-zstd is not installed; reinstall backy/,
    );
  });

  it('says why an installed binary does not load', async () => {
    const broken = join(dir, 'broken.node');
    await writeFile(broken, 'not a shared object');
    const r = await without(
      hideResolution('/^@toondepauw\\/node-zstd-[^/]+$/', `return ${JSON.stringify(broken)};`),
      tryZstd,
    );
    expect(r.out.trim().split('\n')[0]).toMatch(
      /^NativeModuleError: zstd compression is not available: .*: @toondepauw\/node-zstd: its binary @toondepauw\/node-zstd-linux-[\w-]+ does not load \(.*(invalid ELF header|file too short).*\); reinstall backy/,
    );
  });

  it('makes BLAKE3 hashing say so too', async () => {
    const r = await without(
      hideResolution('/^@napi-rs\\/blake-hash-/'),
      `const { loadBlake } = await import(${JSON.stringify(NATIVE_MODULES)});
       try { loadBlake(); } catch (e) { console.log(e.message); }`,
    );
    expect(r.out.trim()).toMatch(
      /^BLAKE3 hashing is not available: @napi-rs\/blake-hash: its binary for this platform, the package @napi-rs\/blake-hash-linux-[\w-]+, is not installed; reinstall backy/,
    );
  });
});
