/**
 * The names backy gives what it adds to a running QEMU, and who owns them. Every block node, job and
 * export of a backup is named `backy-<role>-<owner>` where the owner is the backy process (its pid and
 * start time in clock ticks, so a reused pid is not taken for it) and a counter within it. A later run
 * removes what a dead owner left; anything without this form is never touched.
 */
import { readFileSync } from 'node:fs';

/** Dirty bitmaps backy makes are `backy-<revision id>`; other bitmaps are never touched. */
export const BITMAP_PREFIX = 'backy-';

export type Role = 'fleece' | 'filter' | 'job' | 'export';

export interface Owner {
  pid: number;
  /** The process's start time (clock ticks since boot, /proc/PID/stat field 22). */
  started: number;
  run: number;
}

const NAME = /^backy-(fleece|filter|job|export)-([0-9a-z]+)-([0-9a-z]+)-([0-9a-z]+)$/;

/** The start time of process `pid`, or null if there is no such process. */
export function processStart(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const started = Number(fields[19]);
    return Number.isFinite(started) ? started : null;
  } catch {
    return null;
  }
}

let runs = 0;
const active = new Set<string>();

/** A new owner tag for one backup run of this process. */
export function newOwner(): Owner {
  return { pid: process.pid, started: processStart(process.pid) ?? 0, run: ++runs };
}

export const ownerTag = (o: Owner) => `${o.pid.toString(36)}-${o.started.toString(36)}-${o.run.toString(36)}`;

/** `backy-<role>-<owner>`: at most 31 characters, as QEMU's node names must be. */
export const nameOf = (role: Role, owner: Owner) => `backy-${role}-${ownerTag(owner)}`;

/** The owner a backy name carries, or null for a name backy did not make. */
export function parseName(name: string): { role: Role; owner: Owner } | null {
  const m = NAME.exec(name);
  if (m == null) return null;
  const owner = { pid: parseInt(m[2]!, 36), started: parseInt(m[3]!, 36), run: parseInt(m[4]!, 36) };
  return { role: m[1] as Role, owner };
}

/** Marks a run of this process as in progress (its objects are not leftovers) or as done. */
export function setActive(owner: Owner, running: boolean): void {
  if (running) active.add(ownerTag(owner));
  else active.delete(ownerTag(owner));
}

/** True while the owner's run may still be going: its process lives (same start time), and for this process the run is active. */
export function ownerAlive(owner: Owner): boolean {
  if (owner.pid === process.pid && owner.started === (processStart(process.pid) ?? 0))
    return active.has(ownerTag(owner));
  const started = processStart(owner.pid);
  return started != null && started === owner.started;
}
