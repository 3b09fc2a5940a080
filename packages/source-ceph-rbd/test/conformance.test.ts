import { testSource } from '@backy/core/testing';
import { createRbdSource } from '../src/index.js';
import { ceph, conf, logger, POOL, skipReason, uniqueImage } from './helpers.js';

testSource({
  name: 'ceph-rbd',
  skip: skipReason,
  async makeFixture(initial) {
    const image = uniqueImage('conformance');
    await ceph.createImage(image, initial.length, [{ offset: 0, data: initial }]);
    return {
      source: createRbdSource({ pool: POOL, image, conf, 'full-always': false }, { logger }),
      write: (offset, data) => ceph.writeImage(image, offset, data),
      resize: (size) => ceph.resizeImage(image, size),
      content: () => ceph.exportImage(image),
      cleanup: () => ceph.removeImage(image),
    };
  },
});
