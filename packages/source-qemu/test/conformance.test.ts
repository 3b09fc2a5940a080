/**
 * The conformance suite from @backy/core/testing on the `qemu` source: a running QEMU (-machine none)
 * whose disk the suite writes through the human monitor's qemu-io, as a guest would, and resizes with
 * block_resize. Every backup takes a point in time over QMP and reads it over QEMU's own NBD server.
 */
import { tempDir, testSource } from '@backy/core/testing';
import qemuSource from '../src/index.js';
import { qemuSkip, startVm } from './vm.js';

testSource({
  definition: qemuSource,
  name: 'qemu (running QEMU, QMP + NBD, dirty bitmaps)',
  skip: qemuSkip('source-qemu conformance'),
  // qemu's block layer counts in 512-byte sectors.
  sizeUnit: 512,
  async makeFixture(initial) {
    const dir = await tempDir('backy-qemu-conf-');
    const vm = await startVm(dir.path, initial);
    return {
      options: { qmp: vm.qmpPath, drive: 'drive0', 'fleecing-dir': dir.path },
      write: (offset, data) => vm.write(offset, data),
      resize: (size) => vm.resize(size),
      content: () => vm.content(),
      async cleanup() {
        await vm.stop();
        await dir.cleanup();
      },
    };
  },
});
