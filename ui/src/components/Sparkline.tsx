import { summarize } from "@/lib/rate";

/**
 * Bars for a bucket series, oldest first. Buckets that are null (before watching began) are drawn as a
 * faint baseline. The picture is described in text for screen readers.
 */
export function Sparkline({
  counts,
  bucketSeconds,
  label,
}: {
  counts: readonly (number | null)[];
  bucketSeconds: number;
  label: string;
}) {
  const { total, peak } = summarize(counts);
  const width = 600;
  const height = 80;
  const n = Math.max(1, counts.length);
  const slot = width / n;
  const bar = Math.max(1, slot - 2);
  const scale = peak > 0 ? (height - 4) / peak : 0;
  const unknown = counts.filter((c) => c === null).length;
  const description =
    `${label}: ${total} in the last ${Math.round((n * bucketSeconds) / 60)} minutes, ` +
    `at most ${peak} per ${bucketSeconds} s` +
    (unknown > 0 ? `; watched only for the last ${(n - unknown) * bucketSeconds} s` : "");
  return (
    <figure className="flex flex-col gap-1">
      <svg
        viewBox={`0 0 ${width} ${height}`}
        preserveAspectRatio="none"
        className="h-20 w-full text-primary"
        role="img"
        aria-label={description}
      >
        <line x1="0" y1={height - 0.5} x2={width} y2={height - 0.5} className="stroke-border" strokeWidth="1" />
        {counts.map((c, i) => {
          const x = i * slot + 1;
          if (c === null) {
            return <rect key={i} x={x} y={height - 2} width={bar} height={2} className="fill-muted-foreground/30" />;
          }
          const h = c > 0 ? Math.max(2, c * scale) : 0;
          return (
            <rect key={i} x={x} y={height - h} width={bar} height={h} fill="currentColor">
              <title>{`${c} in ${bucketSeconds} s`}</title>
            </rect>
          );
        })}
      </svg>
      <figcaption className="flex justify-between text-xs text-muted-foreground">
        <span>−{Math.round((n * bucketSeconds) / 60)} min</span>
        <span>
          {total} in total, peak {peak} per {bucketSeconds} s
        </span>
        <span>now</span>
      </figcaption>
    </figure>
  );
}
