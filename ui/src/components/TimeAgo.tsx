import { formatAgo, formatTime } from "@/lib/format";

/** A past moment as "3 min ago", with its exact time as the title. */
export function TimeAgo({ at, now }: { at: string; now: number }) {
  return (
    <time dateTime={at} title={formatTime(at)}>
      {formatAgo(at, now)}
    </time>
  );
}
