import { BackyError } from '../errors.js';
import { type Blake, loadBlake, loadZstd, NativeModuleError, type Zstd } from './native-modules.js';

/** `load()`, with a binary that is missing turned into the BackyError the CLI shows as its one line. */
function orBackyError<T>(load: () => T): T {
  try {
    return load();
  } catch (error) {
    if (error instanceof NativeModuleError)
      throw new BackyError('NATIVE_MODULE_UNAVAILABLE', error.message, { cause: error });
    throw error;
  }
}

/** zstd on this thread (native-modules.js says which); a missing binary is a BackyError. */
export const zstd = (): Zstd => orBackyError(loadZstd);

/** BLAKE3 on this thread; a missing binary is a BackyError. */
export const blake = (): Blake => orBackyError(loadBlake);
