// Where an archive's files are, from format/'s names: the one place that joins them to a directory.
import { join, resolve } from 'node:path';
import type { ArchiveConfig } from '../config.js';
import {
  CONFIG_FILE,
  imageFileName,
  LOG_FILE,
  mapFileName,
  pendingFileName,
  revFileName,
} from '../format/archive-files.js';
import type { ChunkStore } from '../store/contract.js';

/** What the archive's parts share: its directory, config and store. */
export interface ArchiveParts {
  readonly path: string;
  readonly config: ArchiveConfig;
  readonly store: ChunkStore;
}

export function configPath(dir: string): string {
  return join(resolve(dir), CONFIG_FILE);
}

export function logPath(dir: string): string {
  return join(dir, LOG_FILE);
}

export function revPath(dir: string, id: string): string {
  return join(dir, revFileName(id));
}

export function mapPath(dir: string, id: string): string {
  return join(dir, mapFileName(id));
}

/** The marker a backup writes first (format/archive-files.ts, PENDING_SUFFIX). */
export function pendingPath(dir: string, id: string): string {
  return join(dir, pendingFileName(id));
}

/** The image file of a revision in the `images` layout (and of backy 2.x revisions). */
export function imagePath(dir: string, id: string): string {
  return join(dir, imageFileName(id));
}
