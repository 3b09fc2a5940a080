/**
 * Metrics as Prometheus reads them: the text exposition format parsed by parse-prometheus-text-format
 * (an independent parser, so a test does not check our output with our own reading of the format).
 */
// @ts-expect-error: the package ships no types; its one function is typed below.
import parse from 'parse-prometheus-text-format';

export interface MetricFamily {
  name: string;
  help: string;
  type: string;
  metrics: { labels?: Record<string, string>; value?: string }[];
}

export function parseMetrics(text: string): MetricFamily[] {
  return (parse as (text: string) => MetricFamily[])(text);
}

/** The value of the sample of `name` whose labels include `labels`, or undefined. */
export function metricValue(
  families: readonly MetricFamily[],
  name: string,
  labels: Record<string, string> = {},
): string | undefined {
  return families
    .find((f) => f.name === name)
    ?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))?.value;
}
