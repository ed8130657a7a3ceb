import { Link } from "react-router";
import type { Schemas } from "@/api/client";
import { LastHeartbeat, SandboxStatusBadge } from "@/components/SandboxStatus";
import { Badge, type BadgeProps } from "@/components/ui/badge";

type Sandbox = Schemas["Sandbox"];

const COLUMNS = ["Sandbox", "Workspace", "Status", "Last heartbeat", "Agents and skills", "Container"];

/** The sandboxes shown, each linked to its page. */
export function SandboxTable({ sandboxes, filtered, now }: { sandboxes: Sandbox[]; filtered: boolean; now: number }) {
  return (
    // Focusable so keyboard users can scroll it sideways in a narrow window.
    <div tabIndex={0} role="region" aria-label="Sandboxes table" className="overflow-x-auto rounded-lg border border-border">
      <table className="w-full min-w-[56rem] text-sm">
        <caption className="sr-only">Sandboxes{filtered ? " (filtered)" : ""}</caption>
        <thead className="bg-muted text-left">
          <tr>
            {COLUMNS.map((h) => (
              <th key={h} scope="col" className="px-3 py-2 font-medium">
                {h}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {sandboxes.map((s) => (
            <SandboxRow key={s.sandbox_id} sandbox={s} now={now} />
          ))}
        </tbody>
      </table>
    </div>
  );
}

function SandboxRow({ sandbox: s, now }: { sandbox: Sandbox; now: number }) {
  return (
    <tr className="border-t border-border align-top">
      <th scope="row" className="px-3 py-2 text-left font-mono text-xs font-medium">
        <Link className="text-primary underline" to={`/sandboxes/${encodeURIComponent(s.sandbox_id)}`}>
          {s.sandbox_id}
        </Link>
      </th>
      <td className="px-3 py-2">{s.workspace}</td>
      <td className="px-3 py-2">
        <SandboxStatusBadge status={s.status} />
      </td>
      <td className="px-3 py-2 whitespace-nowrap">
        <LastHeartbeat at={s.last_heartbeat} now={now} />
      </td>
      <td className="px-3 py-2">
        <Agents agents={s.agents} />
      </td>
      <td className="px-3 py-2">
        <Container sandbox={s} />
      </td>
    </tr>
  );
}

function Agents({ agents }: { agents: Sandbox["agents"] }) {
  if (agents.length === 0) return <span className="text-muted-foreground">none</span>;
  return (
    <ul className="flex flex-col gap-1">
      {agents.map((a) => (
        <li key={a.name} className="flex flex-wrap items-center gap-1">
          <span className="font-medium">{a.name}</span>
          {(a.skills ?? []).map((sk) => (
            <Badge key={sk.id} variant="outline" title={sk.description || sk.name || sk.id}>
              {sk.name || sk.id}
            </Badge>
          ))}
          {a.capabilities.map((c) => (
            <Badge key={`cap-${c}`} title="capability">
              {c}
            </Badge>
          ))}
        </li>
      ))}
    </ul>
  );
}

// Not the sandbox page's CONTAINER_STATE_VARIANT: here "created" is not listed (it shows as "warning").
const STATE_VARIANT: Record<string, BadgeProps["variant"]> = {
  running: "success",
  error: "destructive",
  stopped: "outline",
  deleted: "outline",
};

function Container({ sandbox: s }: { sandbox: Sandbox }) {
  if (!s.managed) return <span className="text-muted-foreground">not managed</span>;
  const state = s.state ?? "unknown";
  return (
    <div className="flex flex-col gap-1">
      <span className="flex flex-wrap items-center gap-1">
        <Badge variant={STATE_VARIANT[state] ?? "warning"}>{state}</Badge>
        {s.desired_state && s.desired_state !== state && (
          <span className="text-xs text-muted-foreground">→ wanted {s.desired_state}</span>
        )}
      </span>
      {s.state_reason && <span className="text-xs text-destructive">{s.state_reason}</span>}
    </div>
  );
}
