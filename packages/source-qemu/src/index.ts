/**
 * `@backy/source-qemu`: the `qemu` source (a disk of a running QEMU, through QMP) as the default
 * export, and the small QMP client it is built on.
 */
import { qemuSource } from './qemu-source.js';

export type { QemuSourceOptions } from './options.js';
export { createQemuSource, type QemuSourceHooks } from './qemu-source.js';
export { type QemuVersion, QmpClient, QmpError, type QmpEvent } from './qmp.js';
export default qemuSource;
