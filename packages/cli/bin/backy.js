#!/usr/bin/env node
import module from 'node:module';

// libuv's thread pool (file I/O and hashing) is sized when first used; 4 threads leave cores idle
// while some of them wait on the disk.
process.env.UV_THREADPOOL_SIZE ??= '8';
// Node ≥ 22.1 keeps compiled code on disk between runs, which shortens every command's start; Node 20
// has no such cache (and no function), and NODE_DISABLE_COMPILE_CACHE=1 turns it off.
module.enableCompileCache?.();
const { main } = await import('../dist/main.js');

process.exitCode = await main(process.argv.slice(2));
