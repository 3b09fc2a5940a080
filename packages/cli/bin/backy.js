#!/usr/bin/env node
// libuv's thread pool (file I/O and hashing) is sized when first used; 4 threads leave cores idle
// while some of them wait on the disk.
process.env.UV_THREADPOOL_SIZE ??= '8';
const { main } = await import('../dist/index.js');

process.exitCode = await main(process.argv.slice(2));
