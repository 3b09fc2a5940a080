/**
 * `@backy/nbd-protocol`: the NBD protocol as backy's client (`@backy/source-nbd`) and server
 * (`@backy/nbd-server`) both speak it, after the NBD project's doc/proto.md. Numbers and pure
 * encoders/decoders of Buffers only: no sockets, no files. Everything these modules export is public;
 * the helpers they share (the option data cursor) live in modules of their own.
 */
export * from './constants.js';
export * from './errors.js';
export * from './handshake.js';
export * from './transmission.js';
