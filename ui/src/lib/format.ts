/** Parse an ISO 8601 time from the bus; one without a zone is UTC (the bus's times are UTC). */
export function parseIso(iso: string): number {
  const zoned = /(Z|[+-]\d\d:?\d\d)$/i.test(iso) ? iso : `${iso}Z`;
  return Date.parse(zoned);
}

/** "just now", "42 s ago", "3 min ago", "5 h ago", "2 d ago" for an ISO 8601 time; "never" for null. */
export function formatAgo(iso: string | null | undefined, now: number): string {
  if (!iso) return "never";
  const t = parseIso(iso);
  if (Number.isNaN(t)) return iso;
  const s = Math.round((now - t) / 1000);
  if (s < -5) return "in the future";
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ago`;
  return `${Math.floor(h / 24)} d ago`;
}

/** A time for a tooltip: the browser's locale, seconds included. */
export function formatTime(iso: string | null | undefined): string {
  if (!iso) return "";
  const t = new Date(parseIso(iso));
  return Number.isNaN(t.getTime()) ? iso : t.toLocaleString();
}

/** Messages per second to a short string: 0, 0.02, 1.5, 120. */
export function formatRate(perSecond: number): string {
  if (perSecond === 0) return "0";
  if (perSecond < 0.1) return perSecond.toFixed(2);
  if (perSecond < 10) return perSecond.toFixed(1);
  return Math.round(perSecond).toString();
}
