import { TimeAgo } from "@/components/TimeAgo";
import { Badge, type BadgeProps } from "@/components/ui/badge";

/** A sandbox's registration status (online, offline, unregistered) as the Sandboxes list and a sandbox's page show it. */
const STATUS_VARIANT: Record<string, BadgeProps["variant"]> = { online: "success", offline: "warning", unregistered: "outline" };

export function SandboxStatusBadge({ status, ...props }: { status: string } & Omit<BadgeProps, "variant" | "children">) {
  return (
    <Badge variant={STATUS_VARIANT[status] ?? "default"} {...props}>
      {status}
    </Badge>
  );
}

/** A sandbox's last heartbeat ("never" when it sent none). */
export function LastHeartbeat({ at, now }: { at: string | null; now: number }) {
  return at ? <TimeAgo at={at} now={now} /> : <span className="text-muted-foreground">never</span>;
}
