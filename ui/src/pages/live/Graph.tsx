import { Radio } from "lucide-react";
import { EmptyState } from "@/components/EmptyState";
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from "@/components/ui/card";
import { circleLayout, edgeIntensity, HUBS, isLit, type Edge, type Point } from "@/lib/live";
import { cn } from "@/lib/utils";

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}

const SIZE = 520;
const NODE_R = 18;

function isHub(id: string): boolean {
  return (HUBS as readonly string[]).includes(id);
}

/** The sandboxes on a circle (hubs inside), an edge per sender → recipient lit by its latest message; the recent edges listed below. */
export function Graph({ ids, statuses, edges, now }: { ids: string[]; statuses: Map<string, string>; edges: Map<string, Edge>; now: number }) {
  const edgeList = [...edges.values()];
  const usedHubs = HUBS.filter((h) => edgeList.some((e) => e.to === h));
  const nodeIds = [...new Set([...ids, ...edgeList.flatMap((e) => [e.from, e.to])])].filter((id) => !isHub(id));
  const layout = circleLayout(nodeIds, SIZE, SIZE, usedHubs);
  const recent = [...edgeList].sort((a, b) => b.lastAt - a.lastAt);
  const lit = recent.filter((e) => isLit(e, now)).length;

  return (
    <Card aria-labelledby="graph-title">
      <CardHeader>
        <CardTitle id="graph-title">Collaboration graph</CardTitle>
        <CardDescription>
          {nodeIds.length} sandbox{nodeIds.length === 1 ? "" : "es"}; an edge lights up when a message passes and fades
          over a few seconds. Broadcasts and topic messages go through the <em>broadcast</em> hub, capability-routed
          ones through <em>any</em>, then to the sandboxes they reached (dashed).
        </CardDescription>
      </CardHeader>
      <CardContent>
        {nodeIds.length === 0 ? (
          <EmptyState icon={Radio} title="No sandboxes yet">
            <p>The graph shows registered sandboxes and the messages between them.</p>
          </EmptyState>
        ) : (
          <svg
            viewBox={`0 0 ${SIZE} ${SIZE}`}
            className="mx-auto aspect-square w-full max-w-[32rem]"
            role="img"
            aria-label={`Graph of ${nodeIds.length} sandboxes with ${edgeList.length} edges, ${lit} lit now; the list below describes them.`}
            data-testid="live-graph"
          >
            {edgeList.map((e) => {
              const a = layout.get(e.from);
              const b = layout.get(e.to);
              if (!a || !b || e.from === e.to) return null;
              // Both directions used: draw each a little to its side so they do not overlap.
              const side = edges.has(`${e.to}->${e.from}`) ? 4 : 0;
              return <EdgeArrow key={`${e.from}->${e.to}`} edge={e} a={a} b={b} side={side} now={now} />;
            })}
            {usedHubs.map((h) => {
              const p = layout.get(h)!;
              return (
                <g key={h} data-node={h}>
                  <rect x={p.x - 12} y={p.y - 12} width={24} height={24} rx={4} className="fill-secondary stroke-border" />
                  <text x={p.x} y={p.y + 28} textAnchor="middle" className="fill-muted-foreground text-[11px] italic">
                    {h}
                  </text>
                </g>
              );
            })}
            {nodeIds.map((id) => (
              <SandboxNode key={id} id={id} p={layout.get(id)!} status={statuses.get(id) ?? "unknown"} />
            ))}
          </svg>
        )}
        <RecentEdges recent={recent} now={now} />
      </CardContent>
    </Card>
  );
}

/** One edge from a to b: a line and an arrowhead, thicker and brighter the more recently a message passed. */
function EdgeArrow({ edge: e, a, b, side, now }: { edge: Edge; a: Point; b: Point; side: number; now: number }) {
  const intensity = edgeIntensity(e.lastAt, now);
  const active = intensity > 0;
  const dx = b.x - a.x;
  const dy = b.y - a.y;
  const len = Math.hypot(dx, dy) || 1;
  const rb = isHub(e.to) ? 12 : NODE_R;
  const ux = dx / len;
  const uy = dy / len;
  const ox = -uy * side;
  const oy = ux * side;
  const tipX = b.x - ux * (rb + 2) + ox;
  const tipY = b.y - uy * (rb + 2) + oy;
  const head = 7 + 3 * intensity;
  const arrow = [
    [tipX, tipY],
    [tipX - ux * head - uy * head * 0.5, tipY - uy * head + ux * head * 0.5],
    [tipX - ux * head + uy * head * 0.5, tipY - uy * head - ux * head * 0.5],
  ]
    .map(([x, y]) => `${round1(x!)},${round1(y!)}`)
    .join(" ");
  return (
    <g data-edge={`${e.from}->${e.to}`} data-active={active ? "true" : "false"} className={active ? "text-primary" : "text-muted-foreground"}>
      <line
        x1={a.x + ux * NODE_R + ox}
        y1={a.y + uy * NODE_R + oy}
        x2={tipX - ux * head * 0.8}
        y2={tipY - uy * head * 0.8}
        stroke="currentColor"
        strokeWidth={1.5 + 3 * intensity}
        strokeOpacity={0.25 + 0.75 * intensity}
        strokeDasharray={e.kind === "fanout" ? "6 4" : undefined}
      />
      <polygon points={arrow} fill="currentColor" fillOpacity={0.25 + 0.75 * intensity} />
      <title>{`${e.from} → ${e.to}: ${e.count} message${e.count === 1 ? "" : "s"}`}</title>
    </g>
  );
}

function SandboxNode({ id, p, status }: { id: string; p: Point; status: string }) {
  return (
    <g data-node={id}>
      <circle
        cx={p.x}
        cy={p.y}
        r={NODE_R}
        className={cn("stroke-2", status === "online" ? "fill-success/20 stroke-success" : "fill-muted stroke-input")}
      />
      <text x={p.x} y={p.y + NODE_R + 14} textAnchor="middle" className="fill-foreground text-[12px]">
        {id.length > 18 ? `${id.slice(0, 17)}…` : id}
      </text>
      <title>{`${id} (${status})`}</title>
    </g>
  );
}

/** The graph as text: the 20 latest edges, latest first. */
function RecentEdges({ recent, now }: { recent: Edge[]; now: number }) {
  return (
    <>
      <h3 className="mt-4 text-sm font-semibold">Recent edges</h3>
      {recent.length === 0 ? (
        <p className="text-sm text-muted-foreground">No message seen yet since this page opened.</p>
      ) : (
        <div tabIndex={0} role="region" aria-label="Recent edges, latest first" className="mt-1 max-h-40 overflow-y-auto">
          <ul className="text-sm">
            {recent.slice(0, 20).map((e) => (
              <li key={`${e.from}->${e.to}`} data-edge-item={`${e.from}->${e.to}`}>
                <span className="font-mono text-xs">
                  {e.from} → {e.to}
                </span>{" "}
                <span className="text-muted-foreground">
                  {e.count} message{e.count === 1 ? "" : "s"}
                  {e.topic ? `, topic ${e.topic}` : ""}
                  {e.kind === "fanout" ? " (delivered via a hub)" : ""}, last {Math.max(0, Math.round((now - e.lastAt) / 1000))} s ago
                  {isLit(e, now) ? " — lit" : ""}
                </span>
              </li>
            ))}
          </ul>
        </div>
      )}
    </>
  );
}
