/**
 * Reusable chunk-sized buffers in shared memory. Allocating a fresh 4 MiB buffer per chunk made the
 * garbage collector the largest single cost of a backup (~650 ms of 3.8 s for 1 GiB when profiled);
 * pooled buffers are also handed to the chunk workers without a copy, because their memory is shared.
 *
 * The slots are cut from one shared WebAssembly memory, whose base is page-aligned, so every slot starts
 * on a 64 KiB boundary: the only way in plain Node.js to get memory that `O_DIRECT` accepts. Restores
 * write such buffers straight to the target, bypassing the page cache (see restore.ts).
 *
 * Only release a buffer when nothing else can still read or write it.
 */
const WASM_PAGE = 64 * 1024;

/** The part of the WebAssembly API used here (Node's global; its types come with the DOM lib only). */
interface SharedMemory {
  readonly buffer: SharedArrayBuffer;
}
declare const WebAssembly: {
  Memory: new (descriptor: { initial: number; maximum: number; shared: true }) => SharedMemory;
};

/** Alignment of addresses, offsets and lengths that O_DIRECT needs on every common device and file system. */
export const DIRECT_IO_ALIGN = 4096;

export class BufferPool {
  /** Bytes per slot, a whole number of WebAssembly pages. */
  readonly slotBytes: number;
  private memory: SharedMemory | null = null;
  /** The memory's SharedArrayBuffer. */
  private shared: SharedArrayBuffer | null = null;
  private readonly free: number[] = [];
  private readonly used = new Set<number>();
  private slots = 0;

  constructor(
    slotBytes: number,
    /** Slots at most; they stay resident once touched, so this bounds the pool's memory. */
    private readonly maxSlots: number,
  ) {
    this.slotBytes = Math.ceil(slotBytes / WASM_PAGE) * WASM_PAGE;
  }

  /**
   * A buffer of `length` bytes in shared memory (uninitialised). It comes from the pool, aligned, when
   * it fits a slot and a slot is free or can be added; otherwise it is a plain shared buffer.
   */
  acquire(length: number): Buffer {
    if (length > this.slotBytes) return Buffer.from(new SharedArrayBuffer(length));
    let slot = this.free.pop();
    if (slot == null) {
      if (this.slots >= this.maxSlots) return Buffer.from(new SharedArrayBuffer(length));
      slot = this.addSlot();
    }
    this.used.add(slot);
    return Buffer.from(this.shared!, slot * this.slotBytes, length);
  }

  /** Returns a buffer from `acquire` (or a view into one) to the pool; other buffers are ignored. */
  release(buffer: Uint8Array): void {
    if (this.shared == null || buffer.buffer !== this.shared) return;
    const slot = Math.floor(buffer.byteOffset / this.slotBytes);
    if (this.used.delete(slot)) this.free.push(slot);
  }

  /** True if `buffer` is pool memory at an address, and of a length, that O_DIRECT accepts. */
  isDirectIoAligned(buffer: Uint8Array): boolean {
    return (
      this.shared != null &&
      buffer.buffer === this.shared &&
      buffer.byteOffset % DIRECT_IO_ALIGN === 0 &&
      buffer.byteLength % DIRECT_IO_ALIGN === 0
    );
  }

  /**
   * The memory is made at once at its full size and never grown: untouched pages cost nothing, and
   * growing a shared memory that worker threads are using has to interrupt every one of them.
   */
  private addSlot(): number {
    if (this.memory == null) {
      const pages = (this.slotBytes / WASM_PAGE) * this.maxSlots;
      this.memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
      this.shared = this.memory.buffer;
    }
    return this.slots++;
  }
}

/**
 * Slots for one 4 MiB chunk, a chunk file's header and room to place a stored chunk's payload on an
 * aligned address (see ChunkStore). 32 slots bound the pool at 130 MiB; beyond that buffers are plain.
 */
export const chunkBuffers = new BufferPool(4 * 1024 * 1024 + 2 * DIRECT_IO_ALIGN, 32);
