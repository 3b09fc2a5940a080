// The chunk file's frame: the bytes every chunk file starts with. Pure: no file system. The codec step
// that fills and reads it is store/chunk-file.ts; the directory backend's reads and writes
// (backend/chunk-file-io.ts) size and align their buffers by it.

/**
 * One chunk file: a 12-byte header (magic `BKC1`, codec id and three zero bytes, raw length as a
 * little-endian u32) and the payload, compressed by that codec or stored raw (codec 0).
 */
export const CHUNK_FILE_MAGIC = Buffer.from('BKC1');
export const CHUNK_FILE_HEADER_BYTES = 12;
/** Largest chunk file: header plus a raw 4 MiB chunk (compressed ones are smaller). */
export const MAX_CHUNK_FILE_BYTES = CHUNK_FILE_HEADER_BYTES + 4 * 1024 * 1024;
