import type { RunProgress } from './runner.js';

/** A running job's progress as the daemon keeps it: the child's last report and when its phase began. */
export interface JobProgress extends RunProgress {
  /** When the current phase began (ms): its rate is of this phase alone. */
  phaseStartedAt: number;
  /** When the last report came (ms). */
  at: number;
}

/** A running job's progress as the status, the shell, the API and the metrics show it. */
export interface ProgressStatus {
  phase: string;
  /** Bytes done, and in all (0: not known). */
  done: number;
  total: number;
  /** Bytes a second in this phase so far. */
  rate: number;
  /** Seconds left at that rate, or null (no total, or too early to tell). */
  eta_seconds: number | null;
}

/** The rate needs a few seconds of a phase to mean anything (caches, a sparse start). */
const ETA_AFTER_MS = 2000;

/** The record after report `p` at `now`. Pure. */
export function nextProgress(previous: JobProgress | null, p: RunProgress, now: number): JobProgress {
  const samePhase = previous != null && previous.phase === p.phase;
  return { ...p, phaseStartedAt: samePhase ? previous.phaseStartedAt : now, at: now };
}

/** What `progress` shows at `now`. Pure. */
export function progressStatus(progress: JobProgress, now: number): ProgressStatus {
  const elapsed = Math.max(1, now - progress.phaseStartedAt);
  const rate = (progress.done / elapsed) * 1000;
  const known = progress.total > 0 && progress.done < progress.total && rate > 0 && elapsed >= ETA_AFTER_MS;
  return {
    phase: progress.phase,
    done: progress.done,
    total: progress.total,
    rate: Math.round(rate),
    eta_seconds: known ? Math.ceil((progress.total - progress.done) / rate) : null,
  };
}
