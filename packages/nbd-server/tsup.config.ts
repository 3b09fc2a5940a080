import { packageBuild } from '../../tsup.base.js';

// `./protocol` (constants and encoders, no I/O) is shared with @backy/source-nbd's client.
export default packageBuild({ entry: { index: 'src/index.ts', protocol: 'src/protocol.ts' } });
