// Formatting of times, durations, sizes and credits for people.

export const TERMINAL = ['succeeded', 'failed', 'canceled', 'expired'];
export const isActive = (job) => !TERMINAL.includes(job.status);

export function age(iso, now = Date.now()) {
  if (!iso) return '';
  const s = Math.max(0, (now - Date.parse(iso)) / 1000);
  if (s < 5) return 'just now';
  if (s < 60) return `${Math.floor(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function duration(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return '';
  if (s < 1) return '<1 s';
  if (s < 60) return `${Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return Math.round(s % 60) ? `${m} min ${Math.round(s % 60)} s` : `${m} min`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function bytes(n) {
  if (n === null || n === undefined) return '';
  const units = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(n < 10 ? 1 : 0) : n} ${units[i]}`;
}

export const clock = (iso) => (iso ? new Date(iso).toLocaleTimeString(undefined, {
  hour: '2-digit', minute: '2-digit', second: '2-digit', fractionalSecondDigits: 3, hourCycle: 'h23',
}) : '');

export const dateTime = (iso) => (iso ? new Date(iso).toLocaleString() : '');

/** Seconds left: extrapolated from progress while running, else the server's estimate. */
export function eta(job, now = Date.now()) {
  if (!isActive(job)) return null;
  if (job.status === 'running' && job.progress >= 5 && job.started_at) {
    const elapsed = (now - Date.parse(job.started_at)) / 1000;
    return Math.max(0, (elapsed * (100 - job.progress)) / job.progress);
  }
  return job.eta_s ?? null;
}

export function credits(job) {
  const c = job.credits || {};
  if (isActive(job)) return `≈ ${c.estimate ?? '?'}`;
  return c.refunded ? `${c.used ?? 0} (${c.refunded} refunded)` : `${c.used ?? 0}`;
}

/** A short description of a job for lists: its prompt or first text input. */
export function summary(job) {
  const input = job.input || {};
  const text = input.prompt ?? input.text ?? input.name ??
    Object.values(input).find((v) => typeof v === 'string');
  return typeof text === 'string' && text ? text : job.task || job.engine;
}

export const ERROR_TEXT = {
  engine_error: 'The engine failed while running this job.',
  provider_error: 'The upstream provider reported an error.',
  moderated: 'The request was refused by the moderation filter.',
  timeout: 'The job ran longer than the engine allows and was stopped.',
  worker_lost: 'The worker running this job stopped answering, and no retries were left.',
  canceled: 'The job was canceled.',
  invalid_input: 'The input was not accepted by the engine.',
  upstream_unauthorized: 'The upstream provider did not accept the API key in use.',
  upstream_insufficient_credits: 'The account at the upstream provider has too few credits.',
  upstream_rate_limited: 'The upstream provider kept asking genq to slow down.',
  upstream_rejected: 'The upstream provider refused the request.',
  upstream_unavailable: 'The upstream provider did not answer, even after retries.',
  upstream_unknown: 'genq could not tell whether the provider made this job; it was not sent again.',
  upstream_failed: 'The job failed at the upstream provider.',
  upstream_not_found: 'The upstream provider no longer knows this job.',
};
