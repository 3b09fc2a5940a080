import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BackyError } from '@backy/core/source';
import { type CephClientOptions, summarizeStderr } from './rbd.js';

const execFileAsync = promisify(execFile);

/** Escapes a component of qemu's `rbd:` file name, where `:`, `@`, `/` and `\` are special. */
function escapeQemu(value: string): string {
  return value.replace(/[\\:@/]/g, (c) => `\\${c}`);
}

/** qemu's legacy `rbd:pool/image@snap:conf=…:id=…:keyring=…` file name. */
export function qemuRbdFilename(
  pool: string,
  image: string,
  snapshot: string,
  client: CephClientOptions,
): string {
  let name = `rbd:${escapeQemu(pool)}/${escapeQemu(image)}@${escapeQemu(snapshot)}`;
  if (client.conf != null) name += `:conf=${escapeQemu(client.conf)}`;
  if (client.id != null) name += `:id=${escapeQemu(client.id)}`;
  if (client.keyring != null) name += `:keyring=${escapeQemu(client.keyring)}`;
  return name;
}

const qemuSupport = new Map<string, Promise<boolean>>();

/** Whether `binary` is a qemu-img with the rbd block driver (asked once per process). */
export function qemuImgSupportsRbd(binary = 'qemu-img'): Promise<boolean> {
  let known = qemuSupport.get(binary);
  if (known == null) {
    known = execFileAsync(binary, ['--help'], { timeout: 30_000, maxBuffer: 1024 * 1024 }).then(
      ({ stdout }) => /^Supported formats:.*\brbd\b/m.test(stdout),
      () => false,
    );
    qemuSupport.set(binary, known);
  }
  return known;
}

/** Escapes a value for qemu's `key=value,key=value` option syntax. */
function escapeOption(value: string): string {
  return value.replace(/,/g, ',,');
}

/**
 * qemu `--image-opts` for `length` bytes at `offset` of an RBD snapshot: the raw format driver's
 * offset/size window over the rbd protocol driver. A keyring can only be given in the legacy file name.
 */
export function qemuRbdImageOpts(
  target: { pool: string; image: string; snapshot: string; client: CephClientOptions },
  offset: number,
  length: number,
): string {
  const opts = ['driver=raw', `offset=${offset}`, `size=${length}`, 'file.driver=rbd'];
  const { pool, image, snapshot, client } = target;
  if (client.keyring != null) opts.push(`file.filename=${qemuRbdFilename(pool, image, snapshot, client)}`);
  else {
    opts.push(`file.pool=${pool}`, `file.image=${image}`, `file.snapshot=${snapshot}`);
    if (client.conf != null) opts.push(`file.conf=${client.conf}`);
    if (client.id != null) opts.push(`file.user=${client.id}`);
  }
  return opts.map(escapeOption).join(',');
}

/**
 * Reads single chunks of an RBD snapshot by offset with `qemu-img dd` (librbd in userspace: no kernel
 * mapping, and independent of `rbd export-diff`). The window is set with the raw driver's offset and
 * size rather than dd's skip/count, which do not combine in qemu-img 7.
 */
export class QemuImgChunkReader {
  private dir: string | null = null;

  constructor(
    private readonly target: { pool: string; image: string; snapshot: string; client: CephClientOptions },
    private readonly chunkSize: number,
    private readonly binary = 'qemu-img',
    private readonly timeoutMs = 120_000,
  ) {}

  async read(index: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    this.dir ??= await mkdtemp(join(tmpdir(), 'backy-rbd-verify-'));
    const out = join(this.dir, `chunk-${index}`);
    const opts = qemuRbdImageOpts(this.target, index * this.chunkSize, length);
    try {
      await execFileAsync(
        this.binary,
        ['dd', '--image-opts', '-O', 'raw', `bs=${length}`, `if=${opts}`, `of=${out}`],
        {
          timeout: this.timeoutMs,
          signal,
          maxBuffer: 1024 * 1024,
        },
      );
      const data = await readFile(out);
      if (data.length !== length) {
        throw new BackyError(
          'SOURCE_FAILED',
          `qemu-img dd read ${data.length} bytes of chunk ${index}, expected ${length}`,
        );
      }
      return data;
    } catch (error) {
      if (error instanceof BackyError) throw error;
      const err = error as NodeJS.ErrnoException & { stderr?: string };
      const detail = summarizeStderr(err.stderr ?? '') || err.message;
      throw new BackyError('SOURCE_FAILED', `qemu-img dd of chunk ${index} failed: ${detail}`, {
        cause: error,
      });
    } finally {
      await rm(out, { force: true });
    }
  }

  async close(): Promise<void> {
    if (this.dir != null) await rm(this.dir, { recursive: true, force: true });
    this.dir = null;
  }
}
