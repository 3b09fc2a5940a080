import { formatBytes, formatDuration } from '@backy/core';
import type { JobStatus } from '@backy/scheduler';

type DetailJob = Pick<JobStatus, 'job' | 'last_outcome' | 'last_reason' | 'progress'>;

/**
 * The lines below the `jobs` table, too long for a column: why each failed run failed, and how far each
 * running backup is (`web1: backup 45% 1.2 GiB / 2.6 GiB, 80.0 MiB/s, 17s left`).
 */
export function jobDetailLines(jobs: readonly DetailJob[]): string[] {
  const lines: string[] = [];
  for (const j of jobs) {
    if (j.last_reason != null && j.last_outcome !== 'ok')
      lines.push(`${j.job}: ${j.last_outcome}: ${j.last_reason}`);
    const p = j.progress;
    if (p == null) continue;
    const share = p.total > 0 ? ` ${Math.floor((100 * Math.min(p.done, p.total)) / p.total)}%` : '';
    const amount = p.total > 0 ? `${formatBytes(p.done)} / ${formatBytes(p.total)}` : formatBytes(p.done);
    const eta = p.eta_seconds != null ? `, ${formatDuration(p.eta_seconds)} left` : '';
    lines.push(`${j.job}: ${p.phase}${share} ${amount}, ${formatBytes(p.rate)}/s${eta}`);
  }
  return lines;
}
