import { Link } from "react-router";
import type { Schemas } from "@/api/client";
import { JsonBlock } from "@/components/JsonBlock";
import { LastHeartbeat, SandboxStatusBadge } from "@/components/SandboxStatus";
import { Card, CardContent, CardHeader, CardTitle } from "@/components/ui/card";
import { formatTime } from "@/lib/format";

/** The sandbox as registered: status, workspace, heartbeat, mailbox, metadata. */
export function RegistrationCard({ sandbox: s, now, mailboxPath }: { sandbox: Schemas["Sandbox"]; now: number; mailboxPath: string }) {
  return (
    <Card aria-labelledby="sb-registration">
      <CardHeader>
        <CardTitle id="sb-registration">Registration</CardTitle>
      </CardHeader>
      <CardContent className="flex flex-col gap-3">
        <dl className="grid grid-cols-[auto_1fr] gap-x-4 gap-y-1.5 text-sm">
          <dt className="font-medium">Status</dt>
          <dd>
            <SandboxStatusBadge status={s.status} data-testid="sandbox-status" />
          </dd>
          <dt className="font-medium">Workspace</dt>
          <dd>
            <Link className="text-primary underline" to={`/sandboxes?workspace=${encodeURIComponent(s.workspace)}`}>
              {s.workspace}
            </Link>
          </dd>
          <dt className="font-medium">Last heartbeat</dt>
          <dd>
            <LastHeartbeat at={s.last_heartbeat} now={now} />
          </dd>
          <dt className="font-medium">Registered</dt>
          <dd>{s.registered_at ? formatTime(s.registered_at) : <span className="text-muted-foreground">not registered</span>}</dd>
          <dt className="font-medium">Mailbox</dt>
          <dd>
            <Link className="text-primary underline" to={mailboxPath}>
              {s.head_seq} entr{s.head_seq === 1 ? "y" : "ies"}
            </Link>
            <span className="text-muted-foreground">
              {s.head_seq === 0 ? "" : s.settled_seq >= s.head_seq ? ", all settled" : `, settled through seq ${s.settled_seq}`}
            </span>
          </dd>
        </dl>
        {Object.keys(s.metadata).length > 0 && (
          <details>
            <summary className="cursor-pointer text-sm font-medium">Metadata</summary>
            <JsonBlock value={s.metadata} label="Sandbox metadata" className="mt-2" />
          </details>
        )}
      </CardContent>
    </Card>
  );
}
